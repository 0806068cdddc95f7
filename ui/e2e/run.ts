// End-to-end tests of the UI in real headless Chromium against the real server.
//
//   bun run test:e2e        (builds the UI first, then runs this file)
//
// Starts `uv run mlx_server.py --port <free port>` from the repository root (the embedded
// model, serving the built UI at /), drives Debian's /usr/bin/chromium with playwright-core (no
// browser download). Screenshots go to a fresh temporary folder, so a test run leaves the
// checkout untouched; `bash scripts/take_screenshots.sh` re-takes the README images on purpose
// (E2E_SCREENSHOTS=images). Many cases mock /api/generate or /api/compare with page.route: a
// crafted SSE stream carrying markup (XSS), fork events, server failures.
// Env: CHROMIUM (browser path), E2E_SERVER_URL (use a running server instead of starting one),
// E2E_SCREENSHOTS (folder for the screenshots), E2E_ONLY (regex: run only the matching cases).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import {
  ACTION_INFO,
  STATE_INFO,
  STATES,
  type DoneEvent,
  type ForkEvent,
  type Mode,
  type TokenEvent,
} from "../src/generated/events";
import { chatCases } from "./chat";

const UI = resolve(import.meta.dir, "..");
const ROOT = resolve(UI, "..");
const TMP_SHOTS = mkdtempSync(join(tmpdir(), "mlx-entropix-e2e-shots-"));
// The README's images (ui_*.png) go here; other screenshots always to TMP_SHOTS.
const SHOTS = process.env.E2E_SCREENSHOTS ? resolve(process.cwd(), process.env.E2E_SCREENSHOTS) : TMP_SHOTS;
const ONLY = process.env.E2E_ONLY ? new RegExp(process.env.E2E_ONLY, "i") : undefined;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const GEN_TIMEOUT = 120_000; // CPU runners are slow and shared
const VIEWPORT = { width: 1440, height: 780 };

// ---------------------------------------------------------------- tiny test harness
type Case = { name: string; fn: (page: Page) => Promise<void> };
const cases: Case[] = [];
const test = (name: string, fn: (page: Page) => Promise<void>) => {
  if (!ONLY || ONLY.test(name)) cases.push({ name, fn });
};

async function shot(page: Page, name: string, readme = true): Promise<void> {
  const dir = readme ? SHOTS : TMP_SHOTS;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, name), fullPage: true });
}

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeout = GEN_TIMEOUT): Promise<T> {
  const end = Date.now() + timeout;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (${String(last)})` : ""}`);
}

// ---------------------------------------------------------------- server
async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === "object" ? ok(addr.port) : fail(new Error("no port"))));
    });
  });
}

interface Server {
  url: string;
  proc?: ChildProcess;
  log?: string;
}

async function startServer(): Promise<Server> {
  if (process.env.E2E_SERVER_URL) return { url: process.env.E2E_SERVER_URL.replace(/\/$/, "") };
  const port = await freePort();
  const log = join(tmpdir(), `mlx-entropix-e2e-server-${port}.log`);
  const out = openSync(log, "w");
  const proc = spawn("uv", ["run", "mlx_server.py", "--port", String(port), "--log-level", "warning"], {
    cwd: ROOT,
    stdio: ["ignore", out, out],
    detached: true, // own process group, so cleanup reaches uv's child too
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      "the server's /api/health",
      async () => {
        if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}`);
        const r = await fetch(`${url}/api/health`);
        return r.ok;
      },
      180_000,
    );
  } catch (err) {
    stopServer({ url, proc, log });
    throw new Error(`${(err as Error).message}\n--- server log ---\n${readFileSync(log, "utf8").slice(-3000)}`);
  }
  return { url, proc, log };
}

function stopServer(server: Server): void {
  const pid = server.proc?.pid;
  if (!pid || server.proc?.exitCode !== null) return;
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    server.proc?.kill("SIGTERM");
  }
}

// ---------------------------------------------------------------- page helpers
const labels = STATES.map((s) => STATE_INFO[s].label);

async function setForm(page: Page, opts: { prompt: string; maxTokens: number; seed?: number; mode: string }) {
  await page.fill("#prompt", opts.prompt);
  await page.fill("#max-tokens", String(opts.maxTokens));
  await page.fill("#seed", opts.seed === undefined ? "" : String(opts.seed));
  await page.check(`input[name="mode"][value="${opts.mode}"]`);
}

async function run(page: Page) {
  await page.click("button.primary");
  await waitFor("the run to start", async () => (await status(page)) !== "idle", 10_000);
}

const status = (page: Page) => page.getAttribute('[data-testid="status"]', "data-status");

async function waitDone(page: Page) {
  const s = await waitFor(
    "the generation to end",
    async () => {
      const v = await status(page);
      return v !== "running" && v !== "idle" ? v : undefined;
    },
    GEN_TIMEOUT,
  );
  if (s !== "done") {
    const err = await page.locator('[data-testid="error"]').textContent().catch(() => "");
    throw new Error(`generation ended with status ${s}: ${err}`);
  }
}

const tokenCount = (page: Page, mode: string) => page.locator(`[data-testid="output-${mode}"] .tok`).count();

async function errorText(page: Page) {
  return waitFor("an error message", async () => {
    const el = page.locator('[data-testid="error"]');
    return (await el.count()) ? await el.textContent() : undefined;
  }, 15_000);
}

function sseBody(events: object[]): string {
  return events.map((e) => `: ping\r\n\r\nevent: ${(e as { type: string }).type}\r\ndata: ${JSON.stringify(e)}\r\n\r\n`).join("");
}

function fakeToken(index: number, text: string, state: TokenEvent["state"], mode: Mode = "entropix"): TokenEvent {
  return {
    type: "token",
    mode,
    index,
    id: 1000 + index,
    text,
    state,
    action: state === "flowing" ? "argmax" : "sample",
    metrics: { entropy: 1 + index, varentropy: 2 + index, attn_entropy: 3, attn_varentropy: 0.5, agreement: 0.01, interaction_strength: 2 },
    params: { temperature: 0.7, top_p: 0.9, top_k: 27, min_p: 0.03, n_samples: 1 },
    logprob: -0.5,
    top: [{ id: 1000 + index, text, logprob: -0.5 }],
    elapsed_s: 0.1 * (index + 1),
  };
}

// ---------------------------------------------------------------- cases
let server: Server;

test("page loads: presets from /api/prompts, legend, sampler settings from /api/config", async (page) => {
  await waitFor("presets", async () => (await page.locator("#preset option").count()) > 1, 15_000);
  const legend = page.locator(".legend .legend-item");
  assert((await legend.count()) === STATES.length, "legend lists every state");
  for (const label of labels) assert(await page.locator(".legend", { hasText: label }).count(), `legend has ${label}`);
  await page.click("details.sampler summary");
  await waitFor("sampler fields", async () => (await page.locator("#sampler-temperature").count()) === 1, 10_000);
  const cfg = (await (await fetch(`${server.url}/api/config`)).json()) as { defaults: { low_ent: number } };
  assert((await page.inputValue("#sampler-low_ent")) === String(cfg.defaults.low_ent), "low_ent default shown");
  await page.click("details.sampler summary");
  // Choosing a preset fills the prompt box.
  await page.selectOption("#preset", { index: 1 });
  assert((await page.inputValue("#prompt")).length > 0, "preset fills the prompt");
});

test("entropix run: tokens stream in coloured by state, with the state as text", async (page) => {
  await setForm(page, { prompt: "Write a short poem about the sea.", maxTokens: 24, seed: 7, mode: "entropix" });
  await run(page);
  await waitDone(page);
  const n = await tokenCount(page, "entropix");
  assert(n > 0, "tokens appeared");
  const toks = await page.$$eval('[data-testid="output-entropix"] .tok', (els) =>
    els.map((el) => ({
      state: el.getAttribute("data-state"),
      label: el.getAttribute("aria-label"),
      title: el.getAttribute("title"),
      border: getComputedStyle(el).borderBottomColor,
    })),
  );
  const rgb = (hex: string) =>
    `rgb(${parseInt(hex.slice(1, 3), 16)}, ${parseInt(hex.slice(3, 5), 16)}, ${parseInt(hex.slice(5, 7), 16)})`;
  for (const t of toks) {
    const info = STATE_INFO[t.state as keyof typeof STATE_INFO];
    assert(info, `known state ${t.state}`);
    assert(t.label?.includes(info.label) && t.title?.includes(info.label), "state label as text");
    assert(t.border === rgb(info.colour), `colour ${t.border} matches ${info.colour}`);
  }
  const stats = await page.locator('[data-testid="output-entropix"] [data-testid="stat-tokens"]').textContent();
  assert(Number(stats) === n, `stats bar counts ${stats} tokens, page shows ${n}`);
  const finish = await page.locator('[data-testid="stat-finish"]').textContent();
  assert(finish === "length" || finish === "stop", `finish reason ${finish}`);
});

test("hover shows all metrics, state, action, params and alternatives", async (page) => {
  const tok = page.locator('[data-testid="output-entropix"] .tok').nth(2);
  await tok.hover();
  const insp = page.locator('[data-testid="inspector"]');
  await waitFor("the inspector", async () => (await insp.count()) === 1, 5_000);
  const text = (await insp.textContent()) ?? "";
  for (const word of [
    "Entropy",
    "Varentropy",
    "Attention entropy",
    "Attention varentropy",
    "Head disagreement",
    "Interaction strength",
    "Action",
    "temperature",
    "top_k",
    "Top alternatives",
    "Token #2",
  ])
    assert(text.includes(word), `inspector shows ${word}`);
  assert(labels.some((l) => text.includes(l)), "inspector names the state");
  assert(/\d+(\.\d+)?%/.test(text), "alternatives have probabilities");
  assert((await page.locator('[data-testid="insp-top"] tr').count()) >= 2, "several alternatives");
});

test("clicking a point in the entropy-varentropy scatter pins its token", async (page) => {
  const box = page.locator('[data-testid="scatter"] canvas');
  await box.scrollIntoViewIfNeeded();
  // Pixel positions of the scatter points, from the chart instances the page exposes.
  const points = await page.evaluate(() => {
    const charts = Object.values((window as unknown as { __mlxEntropixCharts: Record<string, any> }).__mlxEntropixCharts);
    const chart = charts.find((c) => c.config.type === "scatter");
    const rect = chart.canvas.getBoundingClientRect();
    return chart.getDatasetMeta(0).data.map((el: { x: number; y: number }) => ({ x: rect.left + el.x, y: rect.top + el.y }));
  });
  assert(points.length > 3, `scatter has the tokens (${points.length})`);
  const i = 3;
  await page.mouse.click(points[i].x, points[i].y);
  const j = await waitFor("a pinned token", async () => {
    const sel = page.locator('[data-testid="output-entropix"] .tok.selected');
    return (await sel.count()) === 1 ? Number(await sel.getAttribute("data-index")) : undefined;
  }, 5_000);
  const d = Math.hypot(points[j].x - points[i].x, points[j].y - points[i].y);
  assert(d < 8, `pinned token ${j} is the clicked point ${i} (or one on top of it)`);
  const heading = await page.locator('[data-testid="inspector"] h2').textContent();
  assert(heading?.includes(`Token #${j}`), `inspector shows the clicked token: ${heading}`);
});

test("keyboard: arrow keys move between tokens and inspect them", async (page) => {
  await page.locator('[data-testid="output-entropix"] .tok[tabindex="0"]').focus();
  await page.keyboard.press("Home");
  await page.keyboard.press("ArrowRight");
  await page.keyboard.press("ArrowRight");
  const idx = await page.evaluate(() => document.activeElement?.getAttribute("data-index"));
  assert(idx === "2", `focus moved to token 2 (got ${idx})`);
  await page.mouse.move(5, 5);
  const heading = await page.locator('[data-testid="inspector"] h2').textContent();
  assert(heading?.includes("Token #2") && heading.includes("pinned"), `inspector follows focus: ${heading}`);
  await page.keyboard.press("Escape"); // unpins
  const pressed = await page.locator('[data-testid="output-entropix"] .tok[aria-pressed="true"]').count();
  const after = await page.locator(".right").textContent(); // the inspector's column
  assert(pressed === 0 && !after?.includes("pinned"), `Escape unpins (${pressed} pressed; inspector: ${after?.slice(0, 80)})`);
  await page.keyboard.press("ArrowRight"); // leave a token focused for the screenshot
  await page.keyboard.press("ArrowRight");
  await page.keyboard.press("ArrowRight");
  await shot(page, "ui_entropix.png");
});

test("dark mode: readable colours follow prefers-color-scheme", async (page) => {
  const bg = () => page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const light = await bg();
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = await bg();
  await page.emulateMedia({ colorScheme: "light" });
  const lum = (c: string) => c.match(/\d+/g)!.slice(0, 3).reduce((a, b) => a + Number(b), 0);
  assert(lum(light) > 600 && lum(dark) < 150, `light ${light} vs dark ${dark}`);
});

test("compare mode fills both columns", async (page) => {
  await setForm(page, { prompt: "Which number is larger, 9.9 or 9.11?", maxTokens: 24, seed: 3, mode: "compare" });
  await run(page);
  await waitDone(page);
  const a = await tokenCount(page, "entropix");
  const b = await tokenCount(page, "normal");
  assert(a > 0 && b > 0, `both columns have tokens (${a}, ${b})`);
  await page.locator('[data-testid="output-normal"] .tok').nth(1).hover();
  await shot(page, "ui_compare.png");
});

test("stop cancels the stream and the server stops generating", async (page) => {
  const health = async () => (await (await fetch(`${server.url}/api/health`)).json()) as { queue?: { cancelled?: number } };
  const before = (await health()).queue?.cancelled;
  await setForm(page, { prompt: "Tell me a very long story about a dragon.", maxTokens: 2000, mode: "entropix" });
  await run(page);
  await waitFor("a few tokens", async () => (await tokenCount(page, "entropix")) >= 3);
  await page.click("button.danger");
  await waitFor("the stopped status", async () => (await status(page)) === "stopped", 10_000);
  const n = await tokenCount(page, "entropix");
  assert(n < 2000, "stopped early");
  await Bun.sleep(1500);
  assert((await tokenCount(page, "entropix")) === n, "no tokens after stop");
  assert(await page.isEnabled("button.primary"), "can run again");
  if (typeof before === "number") {
    await waitFor("the server to count the cancellation", async () => ((await health()).queue?.cancelled ?? 0) > before, 30_000);
  }
  // The worker is free again: a short run completes.
  await setForm(page, { prompt: "Say hi.", maxTokens: 4, seed: 1, mode: "entropix" });
  await run(page);
  await waitDone(page);
});

test("a request the server rejects shows its detail message", async (page) => {
  await page.click("details.sampler summary");
  await page.fill("#sampler-top_p", "5");
  await setForm(page, { prompt: "Hello", maxTokens: 4, mode: "entropix" });
  await run(page);
  const msg = await errorText(page);
  assert(/Server answered 4\d\d: .*top_p/.test(msg ?? ""), `4xx detail shown: ${msg}`);
  assert((await status(page)) === "error", "status is error");
  await page.click("details.sampler button.secondary"); // reset
  await page.click("details.sampler summary");
});

test("server errors (5xx, down, error event) show clear messages", async (page) => {
  await setForm(page, { prompt: "Hello", maxTokens: 4, mode: "entropix" });
  await page.route("**/api/generate", (route) =>
    route.fulfill({ status: 500, contentType: "application/json", body: JSON.stringify({ detail: "model crashed" }) }),
  );
  await run(page);
  assert((await errorText(page))?.includes("Server answered 500: model crashed"), "5xx detail shown");

  await page.unroute("**/api/generate");
  await page.route("**/api/generate", (route) => route.abort("connectionrefused"));
  await run(page);
  const down = await errorText(page);
  assert(down?.includes("Cannot reach the server") && down.includes("uv run mlx_server.py"), `down: ${down}`);

  await page.unroute("**/api/generate");
  await page.route("**/api/generate", (route) =>
    route.fulfill({
      status: 200,
      contentType: "text/event-stream",
      body: sseBody([fakeToken(0, "Hi", "flowing"), { type: "error", mode: "entropix", message: "out of memory" }]),
    }),
  );
  await run(page);
  const ev = await errorText(page);
  assert(ev?.includes("out of memory"), `error event shown: ${ev}`);
  assert((await tokenCount(page, "entropix")) === 1, "tokens before the error are kept");
  await page.unroute("**/api/generate");
});

test("token text is untrusted: markup shows as text and never runs", async (page) => {
  const evil = ["<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=1">', "\n<b>bold?</b>"];
  const tokens = evil.map((t, i) => fakeToken(i, t, (["resampling", "exploring", "adaptive"] as const)[i]));
  const done: DoneEvent = {
    type: "done",
    mode: "entropix",
    text: evil.join(""),
    finish_reason: "length",
    prompt_tokens: 3,
    generated_tokens: 3,
    ttft_s: 0.1,
    total_s: 0.3,
    prefill_tok_s: 30,
    decode_tok_s: 10,
    state_counts: { resampling: 1, exploring: 1, adaptive: 1 },
    action_counts: { sample: 3 },
    seed: 1,
    tokens_computed: 0,
    forks: 0,
    confidence: null,
    answer_span: null,
    abstained: false,
    agreement: null,
    confidence_samples: 0,
    cached_tokens: 0,
  };
  await page.route("**/api/generate", (route) =>
    route.fulfill({ status: 200, contentType: "text/event-stream", body: sseBody([...tokens, done]) }),
  );
  await setForm(page, { prompt: "Hello", maxTokens: 3, mode: "entropix" });
  await run(page);
  await waitDone(page);
  const out = page.locator('[data-testid="output-entropix"] .tokens');
  const text = ((await out.textContent()) ?? "").replaceAll("↵", "");
  for (const e of evil) assert(text.includes(e), `shown as text: ${e}`);
  assert((await page.locator('[data-testid="output-entropix"] img, [data-testid="output-entropix"] b').count()) === 0, "no elements injected");
  for (let i = 0; i < evil.length; i++) await page.locator('[data-testid="output-entropix"] .tok').nth(i).hover();
  await Bun.sleep(200);
  assert((await page.evaluate(() => (window as { __xss?: number }).__xss)) === undefined, "window.__xss stays undefined");
  assert((await page.locator('[data-testid="inspector"] img').count()) === 0, "inspector injects nothing");
  await page.unroute("**/api/generate");
});

// ---------------------------------------------------------------- mocked streams: forks, clarity
function fakeDone(mode: Mode, tokens: TokenEvent[], extra: Partial<DoneEvent> = {}): DoneEvent {
  const count = (key: "state" | "action") =>
    tokens.reduce<Record<string, number>>((acc, t) => ({ ...acc, [t[key]]: (acc[t[key]] ?? 0) + 1 }), {});
  return {
    type: "done",
    mode,
    text: tokens.map((t) => t.text).join(""),
    finish_reason: "stop",
    prompt_tokens: 20,
    generated_tokens: tokens.length,
    ttft_s: 0.12,
    total_s: 0.1 * tokens.length + 0.1,
    prefill_tok_s: 160,
    decode_tok_s: 10,
    state_counts: count("state"),
    action_counts: count("action"),
    seed: 3,
    tokens_computed: 0,
    forks: 0,
    confidence: null,
    answer_span: null,
    abstained: false,
    agreement: null,
    confidence_samples: 0,
    cached_tokens: 0,
    ...extra,
  };
}

/** Answer `path` with these events as one SSE body; returns the request bodies it saw. */
async function mockStream(page: Page, path: string, events: object[]): Promise<unknown[]> {
  const bodies: unknown[] = [];
  await page.unroute(`**${path}`);
  await page.route(`**${path}`, (route) => {
    bodies.push(route.request().postDataJSON());
    return route.fulfill({ status: 200, contentType: "text/event-stream", body: sseBody(events) });
  });
  return bodies;
}

function states(texts: string[], mode: Mode, at: TokenEvent["state"][], from = 0): TokenEvent[] {
  return texts.map((t, i) => fakeToken(from + i, t, at[i % at.length], mode));
}

// A fork run as the engine will stream it: the first-token fork (CoT-decoding style), its kept
// branch's tokens, a second fork at an "exploring" token, the rest, and the work in `done`.
function forkStream(): { events: object[]; forks: ForkEvent[]; tokens: TokenEvent[] } {
  const first = states([" Reykjavik", ".", " It", " is", " the"], "fork", ["flowing", "flowing", "adaptive", "flowing", "flowing"]);
  first[0].state = "exploring";
  const rest = states([" world", "'s", " northern", "most", " capital", "."], "fork", ["adaptive", "flowing", "flowing", "flowing", "flowing", "flowing"], 5);
  rest[0].state = "exploring";
  const metrics = (i: number) => ({ ...first[0].metrics, entropy: 1.8 + i, varentropy: 6.5 + i });
  const branch = (text: string, p: number, score: number, answer: string | null, kept = false) => ({
    token: { id: 2000 + Math.round(p * 100), text: text.match(/^\s?[A-Za-z]+/)?.[0] ?? text, logprob: Math.log(p) },
    text,
    tokens: text.split(/(?=[ .'])/).length,
    score,
    answer,
    kept,
    finish: "stop" as const,
    span: [0, 1],
    margins: [score],
    parent: null,
    at: null,
    signal: null,
    cue: null,
  });
  const fork1: ForkEvent = {
    type: "fork",
    mode: "fork",
    index: 0,
    trigger: "first",
    metrics: metrics(0),
    score: "answer_margin",
    branches: [
      branch(" The capital of Iceland is Reykjavik.", 0.34, 0.58, "Reykjavik"),
      branch(" Reykjavik.", 0.27, 0.81, "Reykjavik", true),
      branch(" Iceland's capital city is Reykjavík.", 0.14, 0.44, "Reykjavík"),
      branch(" Oslo.", 0.09, 0.12, "Oslo"),
      branch(" Copenhagen", 0.05, 0.07, "Copenhagen"),
    ],
    kept: 1,
    tokens_computed: 27,
    answer_kind: "contains",
    aggregate: true,
    groups: [
      { answer: "reykjavik", score: 1.39, branches: 2, best: 1, won: true },
      { answer: "reykjavík", score: 0.44, branches: 1, best: 2, won: false },
      { answer: "oslo", score: 0.12, branches: 1, best: 3, won: false },
      { answer: "copenhagen", score: 0.07, branches: 1, best: 4, won: false },
    ],
  };
  const fork2: ForkEvent = {
    type: "fork",
    mode: "fork",
    index: 5,
    trigger: "exploring",
    metrics: metrics(1),
    score: "answer_margin",
    branches: [
      branch(" capital of Iceland.", 0.41, 0.33, null),
      branch(" world's northernmost capital.", 0.38, 0.47, null, true),
      branch(" largest city in the country.", 0.12, 0.29, null),
    ],
    kept: 1,
    tokens_computed: 14,
    answer_kind: null,
    aggregate: false,
    groups: [],
  };
  const tokens = [...first, ...rest];
  // Plausible metrics per state (the README image is drawn from this stream).
  const typical: Partial<Record<TokenEvent["state"], [number, number]>> = { flowing: [0.15, 0.3], adaptive: [1.4, 2.6], exploring: [1.8, 6.5] };
  tokens.forEach((t, i) => {
    const [h, v] = typical[t.state] ?? [1, 1];
    const wobble = 1 + 0.35 * Math.sin(1.7 * i);
    t.metrics = { ...t.metrics, entropy: h * wobble, varentropy: v * wobble };
  });
  // A fork's first token: its probability and alternatives are the branches' first tokens.
  for (const f of [fork1, fork2]) {
    const t = tokens[f.index];
    t.top = f.branches.map((br) => br.token);
    t.logprob = f.branches[f.kept].token.logprob;
    t.id = f.branches[f.kept].token.id;
    t.action = "sample";
  }
  const done = fakeDone("fork", tokens, { tokens_computed: 52, forks: 2 });
  return { events: [fork1, ...first, fork2, ...rest, done], forks: [fork1, fork2], tokens };
}

test("fork mode: a marker before the fork's token opens the branches, scores and the kept one", async (page) => {
  const { events, forks } = forkStream();
  const bodies = await mockStream(page, "/api/generate", events);
  await setForm(page, { prompt: "What is the capital of Iceland? Answer with the city name only.", maxTokens: 48, seed: 3, mode: "fork" });
  await run(page);
  await waitDone(page);
  assert((bodies[0] as { mode?: string }).mode === "fork", `the request asks for mode fork: ${JSON.stringify(bodies[0])}`);
  const out = page.locator('[data-testid="output-fork"]');
  const markers = out.locator('[data-testid="fork-marker"]');
  assert((await markers.count()) === forks.length, `one marker per fork (${await markers.count()})`);
  for (const f of forks) {
    const m = out.locator(`[data-testid="fork-marker"][data-index="${f.index}"]`);
    const next = await m.evaluate((el) => (el.nextElementSibling as HTMLElement | null)?.dataset.index);
    assert(next === String(f.index), `marker ${f.index} stands right before token ${f.index} (next: ${next})`);
    assert(await m.isVisible(), `marker ${f.index} visible`);
  }
  // Open the second fork by clicking its marker.
  const m2 = out.locator('[data-testid="fork-marker"][data-index="5"]');
  await m2.click();
  const view = out.locator('[data-testid="fork-view"]');
  await waitFor("the fork view", async () => (await view.count()) === 1, 5_000);
  assert((await m2.getAttribute("aria-expanded")) === "true", "marker says it is expanded");
  const branches = view.locator('[data-testid="fork-branch"]');
  assert((await branches.count()) === forks[1].branches.length, "every branch shown");
  for (let i = 0; i < forks[1].branches.length; i++) {
    const b = forks[1].branches[i];
    const card = branches.nth(i);
    assert((await card.locator('[data-testid="branch-score"]').textContent())?.startsWith(String(b.score)), `branch ${i} score`);
    assert((await card.textContent())?.includes(b.text.trim()), `branch ${i} text`);
    assert((await card.getAttribute("data-kept")) === String(i === forks[1].kept), `branch ${i} kept flag`);
  }
  const kept = view.locator('[data-testid="fork-branch"][data-kept="true"]');
  assert((await kept.count()) === 1 && (await kept.textContent())?.includes("kept"), "exactly one branch marked kept");
  const keptBorder = await kept.evaluate((el) => getComputedStyle(el).borderTopWidth);
  const otherBorder = await branches.first().evaluate((el) => getComputedStyle(el).borderTopWidth);
  assert(keptBorder !== otherBorder, `kept branch highlighted (${keptBorder} vs ${otherBorder})`);
  const tops = await branches.evaluateAll((els) => els.map((el) => Math.round(el.getBoundingClientRect().top)));
  assert(new Set(tops).size === 1, `branches side by side (tops ${tops})`);
  const meta = (await view.locator('[data-testid="fork-meta"]').textContent()) ?? "";
  assert(meta.includes(STATE_INFO.exploring.label) && meta.includes("14 tokens computed"), `trigger and work: ${meta}`);
  // Keyboard: Escape closes and returns focus to the marker; Enter on the first marker opens it.
  await view.locator(".fork-close").focus();
  await page.keyboard.press("Escape");
  await waitFor("the view to close", async () => (await view.count()) === 0, 5_000);
  assert(await m2.evaluate((el) => el === document.activeElement), "focus back on the marker");
  await out.locator('[data-testid="fork-marker"][data-index="0"]').focus();
  await page.keyboard.press("Enter");
  await waitFor("the first fork", async () => (await view.locator('[data-testid="fork-branch"]').count()) === 5, 5_000);
  assert((await view.locator("h3").textContent())?.includes("#0"), "the first fork opened");
  // The summary: tokens computed vs emitted.
  assert((await out.locator('[data-testid="stat-computed"]').textContent())?.startsWith("52 / 11"), "computed vs emitted in the stats");
  assert((await out.locator('[data-testid="stat-forks"]').textContent()) === "2", "forks counted");
  const st = (await page.locator('[data-testid="status"]').textContent()) ?? "";
  assert(st.includes("52 tokens computed for 11 emitted"), `status names the work: ${st}`);
  await out.locator('.tok[data-index="0"]').click(); // the inspector shows the fork's first token
  assert((await view.count()) === 1, "inspecting a token keeps the fork open");
  const insFork = (await page.locator('[data-testid="insp-fork"]').textContent()) ?? "";
  assert(insFork.includes("branch 2 of 5"), `the inspector says the token was chosen by the fork: ${insFork}`);
  await shot(page, "ui_fork.png");
  await page.unroute("**/api/generate");
});

test("compare: one line chart per mode on shared axes, not four overlaid series", async (page) => {
  const a = states(["A", " fox", " jumps", " over", " it", "."], "entropix", ["flowing", "adaptive", "exploring", "flowing"]);
  const b = states(["The", " dog", " sleeps", "."], "normal", ["flowing", "resampling", "treading"]);
  await mockStream(page, "/api/compare", [a[0], b[0], ...a.slice(1), ...b.slice(1), fakeDone("entropix", a), fakeDone("normal", b)]);
  await setForm(page, { prompt: "Hello", maxTokens: 8, seed: 1, mode: "compare" });
  await run(page);
  await waitDone(page);
  const lines = await page.evaluate(() => {
    const charts = Object.values((window as unknown as { __mlxEntropixCharts: Record<string, any> }).__mlxEntropixCharts);
    return charts
      .filter((c) => c.config.type === "line" && c.canvas.isConnected)
      .map((c) => ({ n: c.data.datasets.length, points: c.data.datasets[0].data.length, yMax: c.scales.y.max, xMax: c.scales.x.max }));
  });
  assert(lines.length === 2, `two line charts (${JSON.stringify(lines)})`);
  assert(lines.every((l) => l.n === 2), "each has entropy and varentropy only");
  assert(lines.map((l) => l.points).sort().join() === "4,6", "each chart holds one mode's tokens");
  assert(lines[0].yMax === lines[1].yMax && lines[0].xMax === lines[1].xMax, "shared axes");
  for (const m of ["entropix", "normal"]) assert(await page.locator(`[data-testid="line-${m}"] canvas`).isVisible(), `${m} chart shown`);
  await page.unroute("**/api/compare");
});

test("sampler settings: labels with units in whole words, the key as tooltip", async (page) => {
  await page.click("details.sampler summary");
  await waitFor("sampler fields", async () => (await page.locator("#sampler-helv_attn_ent_offset").count()) === 1, 10_000);
  const low = page.locator('label[for="sampler-low_ent"]');
  assert((await low.textContent()) === "Low entropy below (bits)", `low_ent label: ${await low.textContent()}`);
  assert((await low.getAttribute("title"))?.startsWith("low_ent · "), "key in the tooltip");
  const labels = await page.$$eval(".sampler .field > label[for]", (els) =>
    els.map((el) => {
      // A word broken across lines has more than one client rect.
      const broken: string[] = [];
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent ?? "";
        for (const m of text.matchAll(/[^\s-]+/g)) {
          const r = document.createRange();
          r.setStart(node, m.index!);
          r.setEnd(node, m.index! + m[0].length);
          if (r.getClientRects().length > 1) broken.push(m[0]);
        }
      }
      return { text: el.textContent ?? "", title: el.getAttribute("title") ?? "", key: el.getAttribute("data-key"), broken };
    }),
  );
  assert(labels.length >= 30, `all fields shown (${labels.length})`);
  for (const l of labels) {
    assert(!l.text.includes("_"), `label in words, not a raw key: ${l.text}`);
    assert(l.key && l.title.startsWith(l.key), `tooltip starts with the key: ${l.title}`);
    assert(l.broken.length === 0, `no word broken mid-word in "${l.text}": ${l.broken}`);
  }
  assert(await page.locator("#sampler-fork_score").evaluate((el) => el.tagName === "SELECT"), "choices as a select");
  await page.click("details.sampler summary");
});

test("queue full: the message names the retry time once", async (page) => {
  await page.unroute("**/api/generate");
  await page.route("**/api/generate", (route) =>
    route.fulfill({
      status: 503,
      headers: { "Retry-After": "5", "Content-Type": "application/json" },
      body: JSON.stringify({ detail: "the server is busy (queue full); retry in 5 s" }),
    }),
  );
  await setForm(page, { prompt: "Hello", maxTokens: 4, mode: "entropix" });
  await run(page);
  const msg = (await errorText(page)) ?? "";
  assert((msg.match(/retry/gi) ?? []).length === 1 && msg.includes("5 s"), `retry named once: ${msg}`);
  await page.unroute("**/api/generate");
});

test("an error clears the previous status and output", async (page) => {
  const ok = states(["Hi", " there", "."], "entropix", ["flowing"]);
  await mockStream(page, "/api/generate", [...ok, fakeDone("entropix", ok)]);
  const fresh = async () => {
    await setForm(page, { prompt: "Hello", maxTokens: 4, mode: "entropix" });
    await run(page);
    await waitDone(page);
    assert((await tokenCount(page, "entropix")) === 3, "the first run shows its tokens");
  };
  const cleared = async (what: string) => {
    const st = (await page.locator('[data-testid="status"]').textContent()) ?? "";
    assert(!st.includes("Done") && (await status(page)) === "error", `${what}: status no longer says done (${st})`);
    assert((await page.locator(".tok").count()) === 0, `${what}: the previous tokens are gone`);
    assert((await page.locator('[data-testid="output-entropix"]').count()) === 0, `${what}: no stale output panel`);
  };
  await fresh();
  await page.fill("#prompt", "   "); // rejected before sending
  await page.click("button.primary");
  assert((await errorText(page))?.includes("Type a prompt"), "the form error is shown");
  await cleared("invalid form");
  await fresh();
  await page.unroute("**/api/generate");
  await page.route("**/api/generate", (route) =>
    route.fulfill({ status: 500, contentType: "application/json", body: JSON.stringify({ detail: "model crashed" }) }),
  );
  await run(page);
  await errorText(page);
  await cleared("server error");
  await page.unroute("**/api/generate");
});

test("normal mode's inspector says its parameters are fixed, entropix's adjusted", async (page) => {
  for (const mode of ["normal", "entropix"] as const) {
    const toks = states(["One", " two", " three"], mode, ["adaptive"]);
    await mockStream(page, "/api/generate", [...toks, fakeDone(mode, toks)]);
    await setForm(page, { prompt: "Count", maxTokens: 3, mode });
    await run(page);
    await waitDone(page);
    await page.locator(`[data-testid="output-${mode}"] .tok`).nth(1).click();
    const action = (await page.locator('[data-testid="insp-action"]').textContent()) ?? "";
    if (mode === "normal") assert(action.includes("fixed") && !action.includes("adjusted"), `normal: ${action}`);
    else assert(action === ACTION_INFO.sample.label, `entropix: ${action}`);
  }
  await page.unroute("**/api/generate");
});

test("phone: the token inspector follows the tokens, before the charts", async (page) => {
  await page.setViewportSize({ width: 390, height: 844 });
  try {
    // An answer with no break in it (a URL) must wrap in its badge too, not widen the page.
    const url = " https://example.com/a_long_answer_with_no_place_to_break_it_on_a_phone";
    const toks = states(["Small", " screens", " need", " the", " details", " close", url], "entropix", ["flowing", "adaptive", "exploring"]);
    const text = toks.map((t) => t.text).join("");
    const span = [text.length - url.length + 1, text.length];
    await mockStream(page, "/api/generate", [...toks, fakeDone("entropix", toks, { confidence: 0.5, answer_span: span })]);
    await setForm(page, { prompt: "Hello", maxTokens: 7, mode: "entropix" });
    await run(page);
    await waitDone(page);
    await page.locator('[data-testid="output-entropix"] .tok').nth(2).click();
    await shot(page, "phone.png", false);
    const [tokens, insp, charts] = await page.evaluate(() =>
      ['[data-testid="output-entropix"]', '[data-testid="inspector"]', ".charts"].map((sel) => {
        const r = document.querySelector(sel)!.getBoundingClientRect();
        return { y: r.top + window.scrollY, height: r.height };
      }),
    );
    assert(insp.y >= tokens.y + tokens.height - 1, `inspector (${insp.y}) below the tokens (${tokens.y + tokens.height})`);
    assert(insp.y + insp.height <= charts.y + 1, `inspector ends (${insp.y + insp.height}) before the charts (${charts.y})`);
    assert(insp.y - (tokens.y + tokens.height) < 40, "right after the tokens");
    const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert(scroll <= client, `no sideways scrolling (page ${scroll} px wide in ${client})`);
    // Compare: the two answers one above the other, each the full width (as in the chat).
    const both = [...toks, ...states(["Tiny", " columns"], "normal", ["flowing"])];
    await mockStream(page, "/api/compare", [...both, fakeDone("entropix", toks), fakeDone("normal", both.slice(toks.length))]);
    await setForm(page, { prompt: "Hello", maxTokens: 7, mode: "compare" });
    await run(page);
    await waitDone(page);
    const widths = await page.$$eval(".outputs > .output", (els) => els.map((e) => e.getBoundingClientRect().width));
    assert(widths.length === 2 && widths.every((w) => w > 300), `compare's answers full width on a phone: ${widths}`);
  } finally {
    await page.setViewportSize(VIEWPORT);
    await page.unroute("**/api/generate");
    await page.unroute("**/api/compare");
  }
});

test("a long answer: the box follows the newest token, unless the reader scrolled up", async (page) => {
  const toks = states(Array.from({ length: 300 }, (_, i) => (i % 6 === 5 ? "\n" : ` word${i}`)), "entropix", ["flowing", "adaptive"]);
  const chunks = [...toks, fakeDone("entropix", toks)].map((e) => sseBody([e]));
  // A stream that arrives over time (page.route answers in one piece): fetch is stubbed in the page.
  await page.evaluate((parts) => {
    const real = window.fetch;
    (window as unknown as { __realFetch: typeof fetch }).__realFetch = real;
    window.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      if (!String(input).includes("/api/generate")) return real(input, init);
      const enc = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          for (const p of parts) {
            c.enqueue(enc.encode(p));
            await new Promise((r) => setTimeout(r, 4));
          }
          c.close();
        },
      });
      return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
    }) as typeof fetch;
  }, chunks);
  const box = page.locator('[data-testid="output-entropix"] .tokens');
  const gap = () => box.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  try {
    await setForm(page, { prompt: "Hello", maxTokens: 300, mode: "entropix" });
    await run(page);
    await waitFor("tokens past the box's height", async () => (await tokenCount(page, "entropix")) > 150, 20_000);
    const over = await box.evaluate((el) => el.scrollHeight - el.clientHeight);
    assert(over > 100 && (await gap()) < 30, `the box (${over} px too short) shows the newest token while streaming (${await gap()} px below)`);
    // The screen reader's live region is not told every new count, only that it is generating.
    const live = await page.locator('[role="status"]').first().textContent();
    assert(live === "Generating…", `live region while streaming: ${live}`);
    await waitDone(page);
    assert((await gap()) < 30, "and the last one at the end");
    const end = await page.locator('[role="status"]').first().textContent();
    assert(end?.startsWith("Done") && end.includes("300 tokens"), `the end is announced: ${end}`);
    // Scrolled up to read: the stream leaves the view alone.
    await run(page);
    await waitFor("the new answer", async () => (await tokenCount(page, "entropix")) < 300, 10_000);
    await waitFor("tokens past the box's height", async () => (await tokenCount(page, "entropix")) > 150, 20_000);
    await box.evaluate((el) => (el.scrollTop = 0));
    await waitDone(page);
    assert((await box.evaluate((el) => el.scrollTop)) === 0, "the reader's place is kept");
  } finally {
    await page.evaluate(() => (window.fetch = (window as unknown as { __realFetch: typeof fetch }).__realFetch));
  }
});

test("answer confidence: a badge in plain words, the answer span marked, an abstention named", async (page) => {
  const toks = states([" Paris", ".", " It", " is"], "entropix", ["flowing", "flowing", "adaptive", "exploring"]);
  const done = fakeDone("entropix", toks, { confidence: 0.31, answer_span: [1, 6], abstained: true, agreement: 0.5, confidence_samples: 4 });
  await mockStream(page, "/api/generate", [...toks, done]);
  await setForm(page, { prompt: "Capital of France?", maxTokens: 4, mode: "entropix" });
  await run(page);
  await waitDone(page);
  const badge = page.locator('[data-testid="output-entropix"] [data-testid="confidence"]');
  const text = (await badge.textContent()) ?? "";
  assert(text.includes("likely wrong") && text.includes("31%") && text.includes("Paris"), `badge: ${text}`);
  assert((await badge.locator('[data-testid="abstained"]').count()) === 1, "the abstention is named");
  const marked = await page.locator('[data-testid="output-entropix"] .tok.in-answer').allTextContents();
  assert(marked.length === 1 && marked[0].includes("Paris"), `span highlighted: ${marked}`);
  assert((await tokenCount(page, "entropix")) === 4, "the text is still shown");
  // Every part of the badge readable (4.5:1, small text) in both colour schemes.
  for (const scheme of ["dark", "light"] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    const ratios = await badge.evaluate((el) => {
      const lum = (c: string) => {
        const [r, g, b] = c.match(/[\d.]+/g)!.slice(0, 3).map((v) => {
          const x = Number(v) / 255;
          return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const panel = getComputedStyle(el.closest(".panel")!).backgroundColor;
      return [...el.children].map((c) => {
        const [hi, lo] = [lum(getComputedStyle(c).color), lum(panel)].sort((a, b) => b - a);
        return `${c.className} ${((hi + 0.05) / (lo + 0.05)).toFixed(2)}`;
      });
    });
    assert(ratios.length === 4 && ratios.every((r) => Number(r.split(" ").at(-1)) >= 4.5), `${scheme}: contrast ${ratios.join(", ")}`);
  }
  await shot(page, "confidence.png", false);
  await page.unroute("**/api/generate");
});

// The conversation mode's cases (e2e/chat.ts), last: they reload the page.
chatCases({ test, waitFor, assert, shot, token: fakeToken, done: fakeDone, sseBody });

// ---------------------------------------------------------------- main
async function main(): Promise<number> {
  if (!existsSync(join(ROOT, "mlx_entropix", "server", "static", "index.html"))) {
    console.error("the built UI is missing: run `bun run build` (bun run test:e2e does).");
    return 1;
  }
  if (!existsSync(CHROMIUM)) {
    console.error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM).`);
    return 1;
  }
  server = await startServer();
  let browser: Browser | undefined;
  let passed = 0;
  let failed = 0;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
      ],
    });
    const context = await browser.newContext({ viewport: VIEWPORT, colorScheme: "light" });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const pageErrors: string[] = [];
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    await page.goto(server.url + "/");

    for (const c of cases) {
      const t0 = Date.now();
      const errorsBefore = pageErrors.length;
      try {
        await c.fn(page);
        if (pageErrors.length > errorsBefore) throw new Error(`page error: ${pageErrors.slice(errorsBefore).join("; ")}`);
        passed++;
        console.log(`PASS ${c.name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (err) {
        failed++;
        console.log(`FAIL ${c.name}\n     ${(err as Error).message}`);
        await shot(page, `fail-${failed}.png`, false).catch(() => undefined);
      }
    }

    // The server being down when the page loads.
    const fresh = await context.newPage();
    await fresh.route("**/api/**", (route) => route.abort("connectionrefused"));
    await fresh.goto(server.url + "/");
    try {
      const msg = await waitFor("the load error", async () => {
        const el = fresh.locator('[data-testid="load-error"]');
        return (await el.count()) ? el.textContent() : undefined;
      }, 10_000);
      assert(msg?.includes("uv run mlx_server.py"), `load error: ${msg}`);
      // The server comes up: the page notices by itself (no reload), the error goes.
      await fresh.unroute("**/api/**");
      await waitFor("the load error to go", async () => (await fresh.locator('[data-testid="load-error"]').count()) === 0, 20_000);
      await waitFor("the built-in prompts", async () => (await fresh.locator("#preset option").count()) > 1, 10_000);
      passed++;
      console.log("PASS server down at page load: the page says how to start it, and recovers when it starts");
    } catch (err) {
      failed++;
      console.log(`FAIL server down at page load\n     ${(err as Error).message}`);
    }
  } finally {
    await browser?.close();
    stopServer(server);
  }
  if (failed && server.log) console.log(`server log: ${server.log}`);
  console.log(`\n${passed} passed, ${failed} failed; screenshots in ${SHOTS}${SHOTS === TMP_SHOTS ? "" : ` and ${TMP_SHOTS}`}`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`e2e: ${(err as Error).message}`);
    stopServer(server ?? { url: "" });
    process.exit(1);
  },
);

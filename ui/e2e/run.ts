// End-to-end tests of the UI in real headless Chromium against the real server.
//
//   bun run test:e2e        (builds the UI first, then runs this file)
//
// Starts `uv run mlx_server.py --port <free port>` from the repository root (the embedded
// model, serving the built UI at /), drives Debian's /usr/bin/chromium with playwright-core (no
// browser download), and saves screenshots to images/. A few cases mock /api/generate with
// page.route: a crafted SSE stream carrying markup (XSS) and server failures.
// Env: CHROMIUM (browser path), E2E_SERVER_URL (use a running server instead of starting one).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { STATE_INFO, STATES, type DoneEvent, type TokenEvent } from "../src/generated/events";

const UI = resolve(import.meta.dir, "..");
const ROOT = resolve(UI, "..");
const IMAGES = join(ROOT, "images");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const GEN_TIMEOUT = 120_000; // CPU runners are slow and shared
const VIEWPORT = { width: 1440, height: 780 };

// ---------------------------------------------------------------- tiny test harness
type Case = { name: string; fn: (page: Page) => Promise<void> };
const cases: Case[] = [];
const test = (name: string, fn: (page: Page) => Promise<void>) => cases.push({ name, fn });

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

function fakeToken(index: number, text: string, state: TokenEvent["state"]): TokenEvent {
  return {
    type: "token",
    mode: "entropix",
    index,
    id: 1000 + index,
    text,
    state,
    action: "sample",
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
  await page.keyboard.press("ArrowRight"); // leave a token focused for the screenshot
  await page.keyboard.press("ArrowRight");
  await page.keyboard.press("ArrowRight");
  mkdirSync(IMAGES, { recursive: true });
  await page.screenshot({ path: join(IMAGES, "ui_entropix.png"), fullPage: true });
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
  await page.screenshot({ path: join(IMAGES, "ui_compare.png"), fullPage: true });
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
        await page.screenshot({ path: join(tmpdir(), `mlx-entropix-e2e-fail-${failed}.png`), fullPage: true }).catch(() => undefined);
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
      passed++;
      console.log("PASS server down at page load: the page says how to start it");
    } catch (err) {
      failed++;
      console.log(`FAIL server down at page load\n     ${(err as Error).message}`);
    }
  } finally {
    await browser?.close();
    stopServer(server);
  }
  if (failed && server.log) console.log(`server log: ${server.log}`);
  console.log(`\n${passed} passed, ${failed} failed`);
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

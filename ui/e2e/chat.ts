// End-to-end cases of the conversation mode (components/chat), registered by run.ts with its
// harness. The first cases talk to the real embedded model (small max_tokens: the CPU runners
// are slow); the others build a conversation through an import or mock a stream.

import { readFileSync } from "node:fs";
import type { Page, Request, Route } from "playwright-core";
import type { DoneEvent, Mode, State, TokenEvent } from "../src/generated/events";

export interface Harness {
  test: (name: string, fn: (page: Page) => Promise<void>) => void;
  waitFor: <T>(what: string, fn: () => Promise<T | undefined | false>, timeout?: number) => Promise<T>;
  assert: (cond: unknown, message: string) => asserts cond;
  shot: (page: Page, name: string, readme?: boolean) => Promise<void>;
  token: (index: number, text: string, state: State, mode?: Mode) => TokenEvent;
  done: (mode: Mode, tokens: TokenEvent[], extra?: Partial<DoneEvent>) => DoneEvent;
  sseBody: (events: object[]) => string;
}

interface ShownTurn {
  id: string;
  role: string;
  status: string | null;
  text: string; // user: the message; assistant: each run's tokens as "mode: text|state ..."
}

export function chatCases(h: Harness): void {
  const { test, waitFor } = h;
  const assert: Harness["assert"] = h.assert;
  const GEN = 180_000;

  const thread = (page: Page): Promise<ShownTurn[]> =>
    page.$$eval('[data-testid="thread"] > li[data-turn-id]', (els) =>
      els.map((el) => ({
        id: el.getAttribute("data-turn-id") ?? "",
        role: el.getAttribute("data-testid") === "turn-user" ? "user" : "assistant",
        status: el.getAttribute("data-status"),
        text:
          el.getAttribute("data-testid") === "turn-user"
            ? (el.querySelector(".bubble")?.textContent ?? "")
            : [...el.querySelectorAll('[data-testid^="output-"]')]
                .map((o) => {
                  const toks = [...o.querySelectorAll(".tok")].map((t) => `${t.textContent}|${t.getAttribute("data-state")}`);
                  return `${o.getAttribute("data-testid")}: ${toks.join(" ")}`;
                })
                .join(" / "),
      })),
    );

  const turnCount = async (page: Page) => (await thread(page)).length;

  async function openChat(page: Page) {
    if (!(await page.locator('[data-testid="chat"]').count())) await page.click('[data-testid="view-chat"]');
    await waitFor("the chat view", async () => page.isEnabled('[data-testid="send"]'), 15_000);
  }

  async function fresh(page: Page, opts: { maxTokens: number; seed?: number; mode: string }) {
    await openChat(page);
    await page.click('[data-testid="new-conversation"]');
    await waitFor("an empty thread", async () => (await turnCount(page)) === 0, 5_000);
    await page.fill("#chat-max-tokens", String(opts.maxTokens));
    await page.fill("#chat-seed", opts.seed === undefined ? "" : String(opts.seed));
    await page.check(`input[name="chat-mode"][value="${opts.mode}"]`);
  }

  /** The status of the last answer once it is no longer running. */
  const settled = (page: Page, n: number) =>
    waitFor(
      "the answer to end",
      async () => {
        const t = await thread(page);
        const last = t[t.length - 1];
        return t.length === n && last.role === "assistant" && last.status !== "running" ? last.status : undefined;
      },
      GEN,
    );

  async function say(page: Page, text: string, expect = "done") {
    const n = await turnCount(page);
    await page.fill("#chat-input", text);
    await page.click('[data-testid="send"]');
    const status = await settled(page, n + 2);
    if (status !== expect) {
      const why = await page.locator('[data-testid="turn-status"]').last().textContent().catch(() => "");
      throw new Error(`the answer to "${text}" ended ${status}, not ${expect}: ${why}`);
    }
  }

  /** Request bodies POSTed to `path` while `fn` runs. */
  async function bodies(page: Page, path: string, fn: () => Promise<void>): Promise<any[]> {
    const out: any[] = [];
    const on = (r: Request) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === path) out.push(JSON.parse(r.postData() ?? "null"));
    };
    page.on("request", on);
    try {
      await fn();
    } finally {
      page.off("request", on);
    }
    return out;
  }

  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const texts = (t: ShownTurn[]) => t.map(({ role, text }) => ({ role, text }));

  async function reloadChat(page: Page, turns: number) {
    await page.reload();
    await waitFor(`the thread restored (${turns} turns)`, async () => (await turnCount(page)) === turns, 20_000);
  }

  test("chat: a three-turn conversation; each turn sends the whole history; a reload restores the thread", async (page) => {
    await fresh(page, { maxTokens: 10, seed: 1, mode: "entropix" });
    await page.fill("#chat-system", "You are brief.");
    const questions = ["Name a colour.", "Why that one?", "Say it in French."];
    const sent = await bodies(page, "/api/generate", async () => {
      for (const q of questions) await say(page, q);
    });
    assert(sent.length === 3, `three requests (${sent.length})`);
    const roles = sent.map((b) => b.messages.map((m: { role: string }) => m.role).join(","));
    assert(roles[2] === "user,assistant,user,assistant,user", `the third turn sends the whole history: ${roles[2]}`);
    assert(sent.every((b) => b.system === "You are brief." && b.prompt === undefined), "system prompt sent with each turn");
    assert(sent[2].messages[2].content === questions[1], "the history holds the earlier messages");
    const before = await thread(page);
    assert(before.length === 6 && before.every((t, i) => t.role === (i % 2 ? "assistant" : "user")), "six turns");
    assert(before.filter((t) => t.role === "assistant").every((t) => t.text.includes("|")), "every answer has coloured tokens");
    await page.locator('[data-testid="turn-assistant"] .tok').nth(1).hover();
    assert((await page.locator('[data-testid="inspector"]').textContent())?.includes("Token #1"), "the inspector shows a token of the thread");
    await reloadChat(page, 6);
    const after = await thread(page);
    assert(same(after, before), `the same thread after the reload:\n${JSON.stringify(before)}\n${JSON.stringify(after)}`);
    assert((await page.inputValue("#chat-system")) === "You are brief.", "the system prompt is kept");
  });

  test("chat: regenerate replaces only the last answer", async (page) => {
    await openChat(page);
    const before = await thread(page);
    assert(before.length === 6, "continues the three-turn conversation");
    await page.fill("#chat-seed", "2"); // the next turn's settings apply to a regenerate
    await page.fill("#chat-max-tokens", "20");
    const sent = await bodies(page, "/api/generate", async () => {
      await page.click('[data-testid="regenerate"]');
      await waitFor("a new answer", async () => (await thread(page))[5]?.id !== before[5].id, 10_000);
      await settled(page, 6);
    });
    const after = await thread(page);
    assert(after.length === 6, `still six turns (${after.length})`);
    assert(same(after.slice(0, 5), before.slice(0, 5)), "the earlier turns are untouched");
    assert(after[5].id !== before[5].id && after[5].status === "done", "the last answer is a new one");
    assert(sent.length === 1 && sent[0].messages.length === 5 && sent[0].seed === 2 && sent[0].max_tokens === 20, `the history up to the last question: ${JSON.stringify(sent[0]?.messages)}`);
    await page.locator('[data-testid="turn-assistant"]').last().locator('button:has-text("Show charts")').click();
    await page.locator('[data-testid="turn-assistant"]').last().locator(".tok").nth(2).click();
    await h.shot(page, "ui_chat.png");
  });

  test("chat: export then import gives the same thread; a bad file changes nothing", async (page) => {
    await openChat(page);
    const before = await thread(page);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="export"]')]);
    const text = readFileSync((await download.path())!, "utf8");
    const file = JSON.parse(text);
    assert(file.format === "mlx-entropix-conversation" && file.messages.length === 7, `the file has the messages (${file.messages?.length})`);
    const tok = file.conversation.turns[1].runs[0].tokens[0];
    assert(typeof tok.metrics.entropy === "number" && tok.top.length === 5, "and every token's metrics");
    const listed = await page.locator('[data-testid="conversation-list"] li').count();

    const bad = JSON.stringify({ ...file, conversation: { ...file.conversation, turns: [{ role: "assistant" }] } });
    await page.setInputFiles('[data-testid="import-file"]', { name: "bad.json", mimeType: "application/json", buffer: Buffer.from(bad) });
    const msg = await waitFor("the import error", async () => {
      const el = page.locator('[data-testid="chat-alert"]');
      return (await el.count()) ? el.textContent() : undefined;
    }, 5_000);
    assert(msg?.startsWith("Cannot import this file:") && msg.includes("turns[0]"), `a clear message: ${msg}`);
    assert(same(await thread(page), before), "a bad file leaves the thread as it was");

    await page.setInputFiles('[data-testid="import-file"]', { name: "c.json", mimeType: "application/json", buffer: Buffer.from(text) });
    await waitFor("the imported conversation in the list", async () => (await page.locator('[data-testid="conversation-list"] li').count()) === listed + 1, 10_000);
    assert((await page.locator('[data-testid="chat-alert"]').count()) === 0, "the error is gone");
    const after = await thread(page);
    assert(same(texts(after), texts(before)) && after[0].id === before[0].id, "the same thread (turns, tokens, states)");
  });

  test("chat: a reload in the middle of an answer keeps the tokens so far, marked interrupted", async (page) => {
    // A fixed seed with a long answer: with a random one the model ends after 12 tokens
    // ("... a tale of perseverance, ...") about 2 times in 5, before the reload.
    await fresh(page, { maxTokens: 400, seed: 7, mode: "entropix" });
    await page.fill("#chat-input", "Tell me a long story about a lighthouse.");
    await page.click('[data-testid="send"]');
    const tokens = () => page.locator('[data-testid="turn-assistant"] .tok').count();
    await waitFor("a few tokens", async () => (await tokens()) >= 4, GEN);
    await Bun.sleep(1_000); // the answer is saved at most 0.4 s apart while it streams
    const seen = await tokens();
    await reloadChat(page, 2);
    const t = await thread(page);
    const kept = await tokens();
    assert(t[1].status === "interrupted", `marked interrupted (${t[1].status})`);
    assert(kept >= 4 && kept <= seen + 20, `the tokens so far are kept (${kept}, ${seen} seen before the reload)`);
    assert((await page.locator('[data-testid="turn-status"]').textContent())?.includes("partial answer is kept"), "and says so");
  });

  // ---------------------------------------------------------------- built or mocked turns
  function conversationFile(turns: number): string {
    const settings = { modes: ["entropix"], max_tokens: 8, seed: 1, sampler: null, system: null };
    const states: State[] = ["flowing", "treading", "exploring", "resampling", "adaptive"];
    const list: object[] = [];
    for (let i = 0; i < turns; i++) {
      const toks = [`Answer`, ` number`, ` ${i + 1}.`].map((t, j) => h.token(j, t, states[(i + j) % states.length]));
      list.push({ role: "user", id: `u${i}`, content: `Question ${i + 1}?` });
      list.push({ role: "assistant", id: `a${i}`, status: "done", runs: [{ mode: "entropix", tokens: toks, done: h.done("entropix", toks) }], chosen: "entropix", settings });
    }
    const conversation = { id: "ten", title: "Ten turns", system: "", turns: list, created: 0, updated: 0 };
    return JSON.stringify({ format: "mlx-entropix-conversation", version: 1, exported_at: "", messages: [], conversation });
  }

  test("chat: a 10-turn conversation survives a reload with the server down", async (page) => {
    await openChat(page);
    await page.setInputFiles('[data-testid="import-file"]', { name: "ten.json", mimeType: "application/json", buffer: Buffer.from(conversationFile(10)) });
    await waitFor("20 turns", async () => (await turnCount(page)) === 20, 10_000);
    const before = await thread(page);
    await page.route("**/api/**", (route) => route.abort("connectionrefused"));
    try {
      await reloadChat(page, 20); // kept in the browser: no server needed to show it
      const after = await thread(page);
      assert(same(after, before), "all ten turns, tokens and states, after the reload");
      assert(after[19].text.includes("10.|"), "the last answer is there");
    } finally {
      await page.unroute("**/api/**");
    }
    await page.reload();
    await openChat(page);
  });

  test("chat: compare per turn, the picked answer continues; a server gone mid-answer leaves the partial answer, interrupted", async (page) => {
    await fresh(page, { maxTokens: 4, seed: 3, mode: "compare" });
    const a = ["Red", "."].map((t, i) => h.token(i, t, "flowing", "entropix"));
    const b = ["Blue", " sky"].map((t, i) => h.token(i, t, "exploring", "normal"));
    await page.route("**/api/compare", (route) =>
      route.fulfill({ status: 200, contentType: "text/event-stream", body: h.sseBody([a[0], b[0], a[1], b[1], h.done("entropix", a), h.done("normal", b)]) }),
    );
    try {
      await say(page, "A colour?");
    } finally {
      await page.unroute("**/api/compare");
    }
    const turn = page.locator('[data-testid="turn-assistant"]').last();
    assert((await turn.locator('[data-testid="output-entropix"]').getAttribute("data-chosen")) === "true", "by default the first answer continues");
    await turn.locator('[data-testid="choose-normal"]').click();
    await waitFor("the pick", async () => (await turn.locator('[data-testid="output-normal"]').getAttribute("data-chosen")) === "true", 5_000);

    // The next turn: two tokens, then the connection ends without a done event.
    await page.check('input[name="chat-mode"][value="entropix"]');
    const part = ["It", " is"].map((t, i) => h.token(i, t, "adaptive"));
    await page.route("**/api/generate", (route) => route.fulfill({ status: 200, contentType: "text/event-stream", body: h.sseBody(part) }));
    let sent: any[];
    try {
      sent = await bodies(page, "/api/generate", () => say(page, "Why?", "interrupted"));
    } finally {
      await page.unroute("**/api/generate");
    }
    assert(sent[0].messages[1].content === "Blue sky", `the picked answer is in the history: ${JSON.stringify(sent[0].messages)}`);
    const note = (await page.locator('[data-testid="turn-status"]').last().textContent()) ?? "";
    assert(note.includes("interrupted") && note.includes("partial answer is kept"), `marked interrupted: ${note}`);
    assert((await page.locator('[data-testid="turn-assistant"]').last().locator(".tok").count()) === 2, "the partial answer stays");
    const before = await thread(page);
    await reloadChat(page, 4);
    assert(same(await thread(page), before), "still there, still interrupted, after a reload");

    // Edit and resend the last message: it changes, its answer is replaced, nothing else.
    const full = ["Because", "."].map((t, i) => h.token(i, t, "flowing"));
    await page.route("**/api/generate", (route) => route.fulfill({ status: 200, contentType: "text/event-stream", body: h.sseBody([...full, h.done("entropix", full)]) }));
    try {
      sent = await bodies(page, "/api/generate", async () => {
        await page.locator('[data-testid="edit"]').click();
        await page.fill('[data-testid="edit-input"]', "Why blue?");
        await page.click('[data-testid="edit-resend"]');
        await waitFor("the new answer", async () => (await thread(page))[3]?.id !== before[3].id, 5_000);
        await settled(page, 4);
      });
    } finally {
      await page.unroute("**/api/generate");
    }
    const edited = await thread(page);
    assert(same(edited.slice(0, 2), before.slice(0, 2)), "the first turn is untouched");
    assert(edited[2].text === "Why blue?" && edited[2].id === before[2].id, `the message changed: ${edited[2].text}`);
    assert(edited[3].status === "done" && edited[3].text.includes("Because"), "a fresh answer");
    assert(sent.length === 1 && sent[0].messages.at(-1).content === "Why blue?", "the edited message was sent");
    assert((await page.locator('[data-testid="turn-assistant"]').first().locator('[data-testid="choose-entropix"]').count()) === 0, "an earlier pick is fixed");
    await page.click('[data-testid="view-prompt"]'); // leave the page as the other cases expect it
  });

  test("chat: open in two tabs, the tab that missed the other's turn does not overwrite it", async (page) => {
    await fresh(page, { maxTokens: 4, mode: "entropix" });
    const answer = (route: Route) => {
      const toks = [h.token(0, "Ok", "flowing")];
      return route.fulfill({ status: 200, contentType: "text/event-stream", body: h.sseBody([...toks, h.done("entropix", toks)]) });
    };
    const other = await page.context().newPage();
    try {
      await page.route("**/api/generate", answer);
      await other.route("**/api/generate", answer);
      await say(page, "First");
      await other.goto(`${new URL(page.url()).origin}/#chat`); // opens the same conversation
      await waitFor("the other tab's thread", async () => (await turnCount(other)) === 2, 15_000);
      await say(page, "Second, from the first tab");
      await say(other, "Second, from the other tab");
      const notice = await waitFor("the other tab's notice", async () => {
        const el = other.locator('[data-testid="chat-alert"]');
        return (await el.count()) ? el.textContent() : undefined;
      }, 10_000);
      assert(notice?.includes("changed in another tab"), `the other tab says why it did not save: ${notice}`);
      await reloadChat(page, 4);
      assert((await thread(page))[2].text === "Second, from the first tab", "the first tab's turn is kept");
    } finally {
      await other.close();
      await page.unroute("**/api/generate");
    }
    await page.click('[data-testid="view-prompt"]');
  });
}

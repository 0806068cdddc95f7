import { describe, expect, test } from "bun:test";
import * as C from "./conversation";
import { checkSettings, turnRequest } from "./request";
import { memoryStorage } from "./persist";
import { done, token } from "../test/fixtures";
import type { Mode } from "../generated/events";

const settings = (modes: Mode[] = ["entropix"]): C.TurnSettings => ({ modes, max_tokens: 8, seed: 1, sampler: null, system: null });

/** A conversation with `n` finished turns; answer i is "A{i}" (one token per word). */
function finished(n: number, modes: Mode[] = ["entropix"]): C.Conversation {
  let c = C.newConversation("c1", 0);
  for (let i = 0; i < n; i++) {
    c = C.send(c, `Q${i}`, [`u${i}`, `a${i}`], settings(modes), i);
    for (const m of modes) c = C.onRun(c, `a${i}`, { type: "events", events: [token(0, `A${i}`, "flowing", m), { ...done(m, 1), text: `A${i}${m === "normal" ? "n" : ""}` }] }, i);
    c = C.onRun(c, `a${i}`, { type: "finished" }, i);
  }
  return c;
}

describe("conversation store", () => {
  test("send adds a user turn and a running answer; the history alternates", () => {
    const c = finished(3);
    expect(c.turns.map((t) => t.role)).toEqual(["user", "assistant", "user", "assistant", "user", "assistant"]);
    expect(c.title).toBe("Q0");
    // A long first message: the title is cut between characters, never inside an emoji.
    const long = C.send(C.newConversation("e", 0), `${"a".repeat(58)}🙂🙂 and more`, ["u", "a"], settings(), 1);
    expect(long.title).toBe(`${"a".repeat(58)}🙂…`);
    expect(C.history(c)).toEqual([
      { role: "user", content: "Q0" },
      { role: "assistant", content: "A0" },
      { role: "user", content: "Q1" },
      { role: "assistant", content: "A1" },
      { role: "user", content: "Q2" },
      { role: "assistant", content: "A2" },
    ]);
    const next = C.send(c, "Q3", ["u3", "a3"], settings(), 9);
    expect(C.isRunning(next)).toBe(true);
    expect(() => C.send(next, "again", ["x", "y"], settings(), 9)).toThrow(/still being generated/);
    // The request for the new answer carries the whole history before it, and the system.
    const req = turnRequest({ ...next, turns: next.turns.map((t) => (t.role === "assistant" ? { ...t, settings: { ...t.settings, system: "Be brief." } } : t)) }, "a3");
    expect(req.path).toBe("/api/generate");
    expect(req.body.messages?.map((m) => m.content)).toEqual(["Q0", "A0", "Q1", "A1", "Q2", "A2", "Q3"]);
    expect(req.body).toMatchObject({ mode: "entropix", system: "Be brief.", max_tokens: 8, seed: 1 });
    expect(req.body.prompt).toBeUndefined();
  });

  test("regenerate replaces only the last answer", () => {
    const c = finished(3);
    const r = C.regenerate(c, "a2b", settings(), 10);
    expect(r.turns.slice(0, 5)).toEqual(c.turns.slice(0, 5)); // the same objects: untouched
    expect(r.turns[5]).toMatchObject({ id: "a2b", status: "running", runs: [{ mode: "entropix", tokens: [] }] });
    expect(turnRequest(r, "a2b").body.messages?.map((m) => m.content)).toEqual(["Q0", "A0", "Q1", "A1", "Q2"]);
    expect(() => C.regenerate(C.newConversation("e", 0), "x", settings(), 0)).toThrow(/no answer/);
  });

  test("edit and resend changes the last user message and drops only its answer", () => {
    const c = finished(2);
    const e = C.editLast(c, "Q1 edited", "a1b", settings(), 10);
    expect(e.turns).toHaveLength(4);
    expect(e.turns.slice(0, 2)).toEqual(c.turns.slice(0, 2));
    expect(e.turns[2]).toMatchObject({ role: "user", id: "u1", content: "Q1 edited" });
    expect(e.turns[3]).toMatchObject({ id: "a1b", status: "running" });
    expect(() => C.editLast(c, "  ", "x", settings(), 0)).toThrow(/empty/);
  });

  test("compare: the chosen answer continues the history; only the last pick can change", () => {
    let c = finished(2, ["entropix", "normal"]);
    expect(C.history(c)[1].content).toBe("A0"); // the first mode by default
    expect(() => C.choose(c, "a0", "normal", 5)).toThrow(/Only the last/);
    c = C.choose(c, "a1", "normal", 5);
    expect(C.history(c)[3].content).toBe("A1n");
    expect(turnRequest(C.send(c, "Q2", ["u2", "a2"], settings(["entropix", "normal"]), 6), "a2").path).toBe("/api/compare");
    expect(() => C.choose(c, "a1", "greedy", 5)).toThrow(/No greedy/);
    // The first mode failed with nothing: the answer that exists continues.
    let d = C.send(C.newConversation("d", 0), "Hi", ["u", "a"], settings(["entropix", "normal"]), 1);
    d = C.onRun(d, "a", { type: "events", events: [{ type: "error", mode: "entropix", message: "oops" }, token(0, "Yo", "flowing", "normal"), done("normal", 1)] }, 2);
    expect((d.turns[1] as C.AssistantTurn).chosen).toBe("entropix"); // still running: no change yet
    d = C.onRun(d, "a", { type: "finished" }, 3);
    expect((d.turns[1] as C.AssistantTurn).chosen).toBe("normal");
  });

  test("a broken stream keeps the partial answer, marked interrupted, and it stays in the history", () => {
    let c = C.send(C.newConversation("c", 0), "Hi", ["u", "a"], settings(), 1);
    c = C.onRun(c, "a", { type: "events", events: [token(0, "Hel"), token(1, "lo")] }, 2);
    c = C.onRun(c, "a", { type: "failed", message: "The stream broke off: network error" }, 3);
    const a = c.turns[1] as C.AssistantTurn;
    expect(a.status).toBe("interrupted");
    expect(a.runs[0].tokens).toHaveLength(2);
    expect(C.turnStatusText(a)).toContain("Interrupted after 2 tokens");
    expect(C.history(c)[1]).toEqual({ role: "assistant", content: "Hello" });
    // A stream that ends cleanly but without a done event: the server went away.
    let d = C.send(C.newConversation("d", 0), "Hi", ["u", "a"], settings(), 1);
    d = C.onRun(d, "a", { type: "events", events: [token(0, "x")] }, 2);
    d = C.onRun(d, "a", { type: "finished" }, 3);
    expect((d.turns[1] as C.AssistantTurn).status).toBe("interrupted");
    // The server cut it short (its time limit, its shutdown): a done saying "cancelled".
    let t = C.send(C.newConversation("t", 0), "Hi", ["u", "a"], settings(), 1);
    t = C.onRun(t, "a", { type: "events", events: [token(0, "x"), { ...done("entropix", 1), finish_reason: "cancelled" }] }, 2);
    t = C.onRun(t, "a", { type: "finished" }, 3);
    const cut = t.turns[1] as C.AssistantTurn;
    expect(cut.status).toBe("interrupted");
    expect(C.turnStatusText(cut)).toContain("Interrupted after 1 token: The server stopped the generation (its per-request time limit");
    // Nothing arrived: a failed turn, left out of the history.
    let e = C.send(C.newConversation("e", 0), "Hi", ["u", "a"], settings(), 1);
    e = C.onRun(e, "a", { type: "failed", message: "Cannot reach the server" }, 2);
    expect((e.turns[1] as C.AssistantTurn).status).toBe("error");
    expect(C.history(e)).toEqual([{ role: "user", content: "Hi" }]);
  });

  test("after a reload, an answer left running is interrupted", () => {
    const c = C.send(C.newConversation("c", 0), "Hi", ["u", "a"], settings(), 1);
    const s = C.settleRunning(c);
    expect((s.turns[1] as C.AssistantTurn).status).toBe("interrupted");
    expect(C.isRunning(s)).toBe(false);
    expect(C.settleRunning(finished(1))).toEqual(finished(1));
  });

  test("events for a turn that was replaced meanwhile are ignored", () => {
    const c = C.regenerate(finished(1), "a0b", settings(), 3);
    expect(C.onRun(c, "a0", { type: "events", events: [token(0, "late")] }, 4)).toBe(c);
  });

  test("settings are checked as in the single-prompt form", () => {
    expect(checkSettings({ maxTokens: "0", seed: "", mode: "entropix" }, "", null)).toEqual({ ok: false, error: expect.stringContaining("Max tokens") });
    const ok = checkSettings({ maxTokens: "16", seed: "4", mode: "compare" }, "  ", { temperature: 0.5 });
    expect(ok).toEqual({ ok: true, path: "/api/compare", settings: { modes: ["entropix", "normal"], max_tokens: 16, seed: 4, sampler: { temperature: 0.5 }, system: null } });
  });

  test("memory storage lists newest first and returns copies", async () => {
    const s = memoryStorage();
    const a = finished(1);
    await s.save(a);
    await s.save({ ...finished(2), id: "c2", updated: 99 });
    expect((await s.list()).map((x) => [x.id, x.turns])).toEqual([["c2", 4], ["c1", 2]]);
    const back = await s.load("c1");
    expect(back).toEqual(a);
    expect(back).not.toBe(a);
    await s.remove("c1");
    expect(await s.load("c1")).toBeUndefined();
  });

  test("a save built on an older stored version is refused: the other tab's turns are kept", async () => {
    const s = memoryStorage();
    const v1 = { ...finished(1), updated: 10 };
    expect(await s.save(v1, null)).toBe(true); // new: nothing stored yet
    const tabA = { ...finished(2), updated: 20 }; // tab A adds a turn to v1
    const tabB = { ...finished(2), updated: 21, title: "B" }; // tab B, which saw only v1, too
    expect(await s.save(tabA, 10)).toBe(true);
    expect(await s.save(tabB, 10)).toBe(false);
    expect(await s.load("c1")).toEqual(tabA);
    expect(await s.save(v1, null)).toBe(false); // "none stored" no longer holds
    expect(await s.save(tabB)).toBe(true); // unchecked
  });
});

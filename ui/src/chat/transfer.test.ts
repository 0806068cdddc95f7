import { describe, expect, test } from "bun:test";
import * as C from "./conversation";
import { exportConversation, exportFileName, exportJSON, FORMAT, importConversation } from "./transfer";
import { done, fork, token } from "../test/fixtures";

function sample(): C.Conversation {
  const s: C.TurnSettings = { modes: ["entropix", "normal"], max_tokens: 8, seed: null, sampler: { temperature: 0.5 }, system: "Be brief." };
  let c = { ...C.newConversation("orig", 0), system: "Be brief." };
  c = C.send(c, "What is 2+2?", ["u0", "a0"], s, 1);
  c = C.onRun(c, "a0", { type: "events", events: [token(0, "4"), token(1, "."), done("entropix", 2), token(0, "Four", "adaptive", "normal"), { ...done("normal", 1), text: "Four" }] }, 2);
  c = C.onRun(c, "a0", { type: "finished" }, 3);
  c = C.choose(c, "a0", "normal", 4);
  const f: C.TurnSettings = { ...s, modes: ["fork"], sampler: null, system: null };
  c = C.send(c, "And 3+3?", ["u1", "a1"], f, 5);
  c = C.onRun(c, "a1", { type: "events", events: [fork(0), token(0, "6", "exploring", "fork")] }, 6);
  return C.onRun(c, "a1", { type: "failed", message: "The stream broke off" }, 7);
}

const mutate = (fn: (file: any) => void): string => {
  const file = JSON.parse(exportJSON(sample()));
  fn(file);
  return JSON.stringify(file);
};

describe("export and import", () => {
  test("round trip: the same thread, every token's metrics, under a new id", () => {
    const c = sample();
    const text = exportJSON(c, new Date(0));
    const back = importConversation(text, "new-id");
    expect(back).toEqual({ ...c, id: "new-id" });
    expect((back.turns[1] as C.AssistantTurn).runs[0].tokens[0].metrics).toEqual(token(0, "4").metrics);
    const file = exportConversation(c, new Date(0));
    expect(file.format).toBe(FORMAT);
    expect(file.exported_at).toBe("1970-01-01T00:00:00.000Z");
    // The messages as the next request would send them: the system, then the chosen answers.
    expect(file.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is 2+2?" },
      { role: "assistant", content: "Four" },
      { role: "user", content: "And 3+3?" },
      { role: "assistant", content: "6" },
    ]);
    expect(exportFileName(c)).toBe("conversation-what-is-2-2.json");
  });

  test("an answer exported mid-stream comes back interrupted", () => {
    const c = C.send(C.newConversation("c", 0), "Hi", ["u", "a"], { modes: ["entropix"], max_tokens: 4, seed: 1, sampler: null, system: null }, 1);
    const back = importConversation(exportJSON(c), "n");
    expect((back.turns[1] as C.AssistantTurn).status).toBe("interrupted");
  });

  test.each([
    ["not JSON", () => "{oops", /not JSON/],
    ["another JSON file", () => JSON.stringify({ hello: 1 }), /not an exported conversation/],
    ["a newer version", () => mutate((f) => (f.version = 2)), /version 2/],
    ["a metric that is not a number", () => mutate((f) => (f.conversation.turns[1].runs[0].tokens[1].metrics.entropy = "high")), /conversation\.turns\[1\]\.runs\[0\]\.tokens\[1\]\.metrics\.entropy should be a number/],
    ["an unknown state", () => mutate((f) => (f.conversation.turns[1].runs[1].tokens[0].state = "sleepy")), /tokens\[0\]\.state should be one of flowing/],
    ["tokens out of order", () => mutate((f) => f.conversation.turns[1].runs[0].tokens.reverse()), /tokens\[0\]\.index should be 0/],
    ["turns out of order", () => mutate((f) => f.conversation.turns.splice(0, 1)), /turns\[0\]\.role should be "user"/],
    ["a pick that is not one of the answers", () => mutate((f) => (f.conversation.turns[1].chosen = "greedy")), /chosen should be one of this turn's modes/],
    ["a repeated id", () => mutate((f) => (f.conversation.turns[2].id = "u0")), /repeats "u0"/],
    ["a fork without branches", () => mutate((f) => (f.conversation.turns[3].runs[0].forks[0].branches = [])), /branches should not be empty/],
    ["missing settings", () => mutate((f) => delete f.conversation.turns[3].settings), /settings should be an object/],
  ])("a bad file (%s) gives a clear message", (_name, make, message) => {
    expect(() => importConversation(make(), "x")).toThrow(message);
    expect(() => importConversation(make(), "x")).toThrow(/^Cannot import this file: /);
  });

  test("fields added by newer servers are kept, not rejected", () => {
    const text = mutate((f) => (f.conversation.turns[1].runs[0].done.confidence = 0.9));
    expect((importConversation(text, "x").turns[1] as any).runs[0].done.confidence).toBe(0.9);
  });
});

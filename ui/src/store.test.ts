import { describe, expect, test } from "bun:test";
import { initialSession, liveStatus, reducer, statusText } from "./store";
import { done, fork, token } from "./test/fixtures";

describe("session reducer", () => {
  test("compare: events are routed by mode", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix", "normal"] });
    s = reducer(s, {
      type: "events",
      events: [token(0, "A"), token(0, "a", "flowing", "normal"), token(1, "B"), done("normal", 1)],
    });
    expect(s.runs.map((r) => r.tokens.map((t) => t.text).join(""))).toEqual(["AB", "a"]);
    expect(s.runs[1].done?.finish_reason).toBe("length");
    expect(s.status).toBe("running");
    s = reducer(s, { type: "events", events: [done("entropix", 2)] });
    s = reducer(s, { type: "finished" });
    expect(s.status).toBe("done");
    expect(statusText(s)).toContain("3 tokens");
  });

  test("error events: per mode or for the whole request", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix"] });
    s = reducer(s, { type: "events", events: [{ type: "error", mode: "entropix", message: "oops" }] });
    expect(s.runs[0].error).toBe("oops");
    s = reducer(s, { type: "events", events: [{ type: "error", mode: null, message: "global" }] });
    expect(s.error).toBe("global");
    expect(reducer(s, { type: "finished" }).status).toBe("error");
  });

  test("stop keeps the tokens; a new start clears everything", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix"] });
    s = reducer(s, { type: "events", events: [token(0, "x")] });
    s = reducer(s, { type: "stopped" });
    expect(s.status).toBe("stopped");
    expect(s.runs[0].tokens).toHaveLength(1);
    expect(statusText(s)).toBe("Stopped after 1 token.");
    s = reducer(s, { type: "failed", message: "down" });
    expect(s.error).toBe("down");
    s = reducer(s, { type: "start", modes: ["normal"] });
    expect(s).toEqual({ status: "running", runs: [{ mode: "normal", tokens: [] }] });
  });

  test("fork events are kept per run; the done status names the work", () => {
    let s = reducer(initialSession, { type: "start", modes: ["fork"] });
    s = reducer(s, { type: "events", events: [fork(0), token(0, "x", "flowing", "fork"), { ...done("fork", 1), forks: 1, tokens_computed: 15 }] });
    s = reducer(s, { type: "finished" });
    expect(s.runs[0].forks).toHaveLength(1);
    expect(statusText(s)).toBe("Done (fork: length), 1 token; 15 tokens computed for 1 emitted (15.0×, 1 fork).");
  });

  test("a request rejected before sending clears the previous output and status", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix"] });
    s = reducer(s, { type: "events", events: [token(0, "x"), done()] });
    s = reducer(s, { type: "finished" });
    expect(statusText(s)).toContain("Done");
    s = reducer(s, { type: "rejected", message: "Type a prompt" });
    expect(s).toEqual({ status: "error", runs: [], error: "Type a prompt" });
    expect(statusText(s)).toBe("Failed.");
  });

  test("a request that failed before any event shows no output, only the error", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix", "normal"] });
    s = reducer(s, { type: "failed", message: "Server answered 500: model crashed" });
    expect(s.runs).toEqual([]);
    expect(s.status).toBe("error");
    expect(statusText(s)).toBe("Failed.");
  });

  test("an answer the server cut short is interrupted, with the reason, not done", () => {
    // The server's time limit (--timeout) or its shutdown ends a stream with finish_reason
    // "cancelled": the page never pressed Stop (Stop closes the stream, no done is read).
    let s = reducer(initialSession, { type: "start", modes: ["entropix"] });
    s = reducer(s, { type: "events", events: [token(0, "x"), { ...done("entropix", 1), finish_reason: "cancelled" }] });
    s = reducer(s, { type: "finished" });
    expect(s.status).toBe("interrupted");
    expect(statusText(s)).toBe("Interrupted after 1 token: the server stopped the generation (its per-request time limit, or it shut down).");
    // A stream that ended cleanly before a mode's done: that mode's answer is incomplete.
    let c = reducer(initialSession, { type: "start", modes: ["entropix", "normal"] });
    c = reducer(c, { type: "events", events: [token(0, "x"), done("entropix", 1), token(0, "y", "flowing", "normal")] });
    c = reducer(c, { type: "finished" });
    expect(c.status).toBe("interrupted");
    expect(statusText(c)).toBe("Interrupted after 2 tokens: the stream ended before the answer was complete.");
  });

  test("the live region hears 'Generating…' once, not every new count; then the end", () => {
    let s = reducer(initialSession, { type: "start", modes: ["entropix"] });
    s = reducer(s, { type: "events", events: [token(0, "x"), token(1, "y")] });
    expect(statusText(s)).toBe("Generating… 2 tokens");
    expect(liveStatus(statusText(s), true)).toBe("Generating…");
    s = reducer(reducer(s, { type: "events", events: [done("entropix", 2)] }), { type: "finished" });
    expect(liveStatus(statusText(s), false)).toBe(statusText(s));
  });
});

import { describe, expect, test } from "bun:test";
import { forkSummary, forksByIndex, forkWork, forkWorkText, isKept, keptBranch, pendingForks, triggerLabel } from "./forks";
import { STATE_INFO } from "./generated/events";
import { done, fork } from "./test/fixtures";

describe("fork helpers", () => {
  test("forks are found by the index of the token they stand before", () => {
    const m = forksByIndex([fork(0), fork(5), fork(5, 2)]);
    expect([...m.keys()]).toEqual([0, 5]);
    expect(m.get(5)?.map((f) => f.kept)).toEqual([1, 2]);
    expect(forksByIndex(undefined).size).toBe(0);
  });

  test("a fork whose kept tokens have not arrived yet is pending", () => {
    expect(pendingForks([fork(0), fork(3)], 3).map((f) => f.index)).toEqual([3]);
    expect(pendingForks(undefined, 0)).toEqual([]);
  });

  test("the kept branch: by fork.kept or branch.kept", () => {
    const f = fork(2, 1);
    expect(isKept(f, 1)).toBe(true);
    expect(isKept(f, 0)).toBe(false);
    expect(keptBranch(f)?.answer).toBe("Reykjavik");
    expect(keptBranch({ ...f, kept: -1, branches: f.branches.map((b) => ({ ...b, kept: false })) })).toBeUndefined();
  });

  test("summary names the position, the width and the kept first token with its score", () => {
    expect(forkSummary(fork(4))).toBe('Fork before token #4: 3 branches, kept " Reykjavik." (score 0.82)');
  });

  test("trigger in words, from the generated state labels", () => {
    expect(triggerLabel("first")).toBe("the first token");
    expect(triggerLabel("exploring")).toContain(STATE_INFO.exploring.label);
    expect(triggerLabel("other")).toBe("other");
  });

  test("work: computed vs emitted only when there were forks", () => {
    expect(forkWork(done())).toBeUndefined();
    const d = { ...done("fork", 10), tokens_computed: 25, forks: 2 };
    expect(forkWork(d)).toEqual({ computed: 25, emitted: 10, ratio: 2.5 });
    expect(forkWorkText(d)).toBe("25 tokens computed for 10 emitted (2.5×, 2 forks)");
    expect(forkWorkText({ ...d, forks: 1 })).toContain("1 fork)");
  });
});

// Pure helpers for fork events (mode "fork"): where they sit in the token stream, how to name
// them, and the work they cost. No React here.
import { STATE_INFO, type DoneEvent, type ForkBranch, type ForkEvent, type ForkTrigger } from "./generated/events";
import { count, formatNumber, quoteToken } from "./format";

/** Forks by the index of the token they stand before (several at one index keep their order). */
export function forksByIndex(forks: readonly ForkEvent[] | undefined): Map<number, ForkEvent[]> {
  const out = new Map<number, ForkEvent[]>();
  for (const f of forks ?? []) {
    const at = out.get(f.index);
    if (at) at.push(f);
    else out.set(f.index, [f]);
  }
  return out;
}

/** Forks whose index lies beyond the tokens received so far (the kept branch has not arrived). */
export function pendingForks(forks: readonly ForkEvent[] | undefined, nTokens: number): ForkEvent[] {
  return (forks ?? []).filter((f) => f.index >= nTokens);
}

/** Is this branch the kept one? The event says it twice (branch.kept, fork.kept); either counts. */
export function isKept(fork: ForkEvent, i: number): boolean {
  return fork.kept === i || !!fork.branches[i]?.kept;
}

export function keptBranch(fork: ForkEvent): ForkBranch | undefined {
  const i = fork.branches.findIndex((_, j) => isKept(fork, j));
  return i === -1 ? undefined : fork.branches[i];
}

const TRIGGERS: Record<ForkTrigger, string> = {
  first: "the first token",
  exploring: `a "${STATE_INFO.exploring.label}" token`,
  both: `the first token and "${STATE_INFO.exploring.label}" tokens`,
};

/** What opened the fork, in words. */
export function triggerLabel(trigger: string): string {
  return (TRIGGERS as Record<string, string>)[trigger] ?? trigger;
}

/** One line for the marker's accessible name and tooltip. */
export function forkSummary(fork: ForkEvent): string {
  const kept = keptBranch(fork);
  const keptText = kept ? `, kept ${quoteToken(kept.token.text)} (score ${formatNumber(kept.score)})` : "";
  return `Fork before token #${fork.index}: ${count(fork.branches.length, "branch", "branches")}${keptText}`;
}

/** Tokens computed vs emitted once a run with forks is done; undefined when there were none. */
export function forkWork(done: DoneEvent | undefined): { computed: number; emitted: number; ratio: number } | undefined {
  if (!done || !done.forks) return undefined;
  const emitted = done.generated_tokens;
  const computed = Math.max(done.tokens_computed, emitted);
  return { computed, emitted, ratio: emitted > 0 ? computed / emitted : computed };
}

export function forkWorkText(done: DoneEvent | undefined): string | undefined {
  const w = forkWork(done);
  if (!w) return undefined;
  const forks = done!.forks;
  return `${count(w.computed, "token")} computed for ${w.emitted} emitted (${w.ratio.toFixed(1)}×, ${count(forks, "fork")})`;
}

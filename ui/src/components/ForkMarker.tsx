import type { ForkEvent } from "../generated/events";
import { forkSummary } from "../forks";

export const forkDomId = (mode: string, index: number) => `fork-${mode}-${index}`;

interface Props {
  fork: ForkEvent;
  open: boolean;
  onToggle: (fork: ForkEvent) => void;
}

/** A small button before the first token of a fork's kept branch; opens the branches. */
export function ForkMarker({ fork, open, onToggle }: Props) {
  const summary = forkSummary(fork);
  return (
    <button
      type="button"
      className={open ? "fork-marker open" : "fork-marker"}
      data-testid="fork-marker"
      data-index={fork.index}
      aria-expanded={open}
      aria-controls={open ? forkDomId(fork.mode, fork.index) : undefined}
      aria-label={`${summary}. ${open ? "Hide" : "Show"} the branches.`}
      title={summary}
      onClick={() => onToggle(fork)}
    >
      <svg viewBox="0 0 12 14" width="0.8em" height="0.95em" aria-hidden="true">
        <path d="M6 14V8M6 8L2 3M6 8l4-5M2 3V0.5M10 3V0.5" fill="none" stroke="currentColor" strokeWidth="1.6" />
      </svg>
      <span className="fork-count" aria-hidden="true">
        {fork.branches.length}
      </span>
    </button>
  );
}

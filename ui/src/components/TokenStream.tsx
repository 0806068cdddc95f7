import { useCallback, useEffect, useRef, type KeyboardEvent } from "react";
import type { Mode } from "../generated/events";
import type { Run } from "../store";
import type { StateTable } from "../format";
import { Token } from "./Token";

export const tokenDomId = (mode: Mode, index: number) => `tok-${mode}-${index}`;

interface Props {
  run: Run;
  table: StateTable;
  selected: number | null; // pinned token of this run
  running: boolean;
  onInspect: (mode: Mode, index: number, pin: boolean) => void;
  onLeave: () => void;
}

/**
 * The generated text as focusable tokens. One tab stop for the whole output (roving tabindex):
 * arrow keys move between tokens, Home/End jump, Escape unpins.
 */
export function TokenStream({ run, table, selected, running, onInspect, onLeave }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const inspect = useCallback(
    (index: number, pin: boolean) => onInspect(run.mode, index, pin),
    [onInspect, run.mode],
  );
  const n = run.tokens.length;
  const current = selected !== null && selected < n ? selected : 0;

  // Keep the pinned token in view (e.g. after clicking its point in a chart).
  useEffect(() => {
    if (selected === null) return;
    document.getElementById(tokenDomId(run.mode, selected))?.scrollIntoView?.({ block: "nearest" });
  }, [selected, run.mode]);

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    if (n === 0) return;
    let next: number | null = null;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") next = Math.min(n - 1, current + 1);
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") next = Math.max(0, current - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = n - 1;
    else if (e.key === "Escape") {
      onLeave();
      return;
    }
    if (next === null) return;
    e.preventDefault();
    document.getElementById(tokenDomId(run.mode, next))?.focus();
  };

  return (
    <div
      ref={ref}
      className="tokens"
      role="group"
      aria-label={`${run.mode} output, ${n} tokens. Arrow keys move between tokens to inspect them.`}
      data-mode={run.mode}
      onKeyDown={onKeyDown}
      onMouseLeave={onLeave}
    >
      {run.tokens.map((ev, i) => (
        <Token
          key={i}
          ev={ev}
          table={table}
          domId={tokenDomId(run.mode, i)}
          selected={selected === i}
          focusable={i === current}
          onInspect={inspect}
        />
      ))}
      {running && !run.done && !run.error && <span className="cursor" aria-hidden="true" />}
      {n === 0 && !running && !run.error && <span className="placeholder">No tokens.</span>}
    </div>
  );
}

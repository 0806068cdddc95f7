import { Fragment, useCallback, useEffect, useLayoutEffect, useMemo, useRef, type KeyboardEvent } from "react";
import type { ForkEvent, Mode } from "../generated/events";
import type { Run } from "../store";
import { count, type StateTable } from "../format";
import { forksByIndex, pendingForks } from "../forks";
import { ForkMarker } from "./ForkMarker";
import { Token } from "./Token";
import { answerTokens } from "../confidence";

export const tokenDomId = (mode: Mode, index: number, prefix = "") => `tok-${prefix}${mode}-${index}`;

interface Props {
  run: Run;
  table: StateTable;
  selected: number | null; // pinned token of this run
  running: boolean;
  onInspect: (mode: Mode, index: number, pin: boolean) => void;
  onLeave: () => void;
  onUnpin?: () => void; // Escape: forget the pinned token (the inspector goes back to hover)
  openFork?: number | null; // index of this run's open fork
  onToggleFork?: (fork: ForkEvent) => void;
  idPrefix?: string; // keeps element ids unique where several outputs of a mode are shown (chat)
}

/**
 * The generated text as focusable tokens. One tab stop for the whole output (roving tabindex):
 * arrow keys move between tokens, Home/End jump, Escape unpins.
 */
export function TokenStream({ run, table, selected, running, onInspect, onLeave, onUnpin, openFork = null, onToggleFork, idPrefix = "" }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const inspect = useCallback(
    (index: number, pin: boolean) => onInspect(run.mode, index, pin),
    [onInspect, run.mode],
  );
  const n = run.tokens.length;
  const forks = useMemo(() => forksByIndex(run.forks), [run.forks]);
  const marker = (f: ForkEvent, k: number) => (
    <ForkMarker key={`fork-${f.index}-${k}`} fork={f} open={openFork === f.index} onToggle={(x) => onToggleFork?.(x)} />
  );
  const current = selected !== null && selected < n ? selected : 0;
  const answer = useMemo(() => answerTokens(run.tokens, run.done?.answer_span), [run.tokens, run.done]);

  // As tokens stream in, follow the newest one (the box scrolls past its height) if the reader
  // was at the end of what was there before: one who scrolled up is left where they are.
  const seen = useRef(n); // tokens already shown (an answer shown again does not jump)
  const height = useRef(0); // the box's content height before this update
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (n > seen.current && height.current - el.scrollTop - el.clientHeight < 24) el.scrollTop = el.scrollHeight;
    seen.current = n;
    height.current = el.scrollHeight;
  }, [n]);

  // Keep the pinned token in view (e.g. after clicking its point in a chart).
  useEffect(() => {
    if (selected === null) return;
    document.getElementById(tokenDomId(run.mode, selected, idPrefix))?.scrollIntoView?.({ block: "nearest" });
  }, [selected, run.mode, idPrefix]);

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    if (n === 0) return;
    let next: number | null = null;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") next = Math.min(n - 1, current + 1);
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") next = Math.max(0, current - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = n - 1;
    else if (e.key === "Escape") {
      (onUnpin ?? onLeave)();
      return;
    }
    if (next === null) return;
    e.preventDefault();
    document.getElementById(tokenDomId(run.mode, next, idPrefix))?.focus();
  };

  return (
    <div
      ref={ref}
      className="tokens"
      role="group"
      aria-label={`${run.mode} output, ${count(n, "token")}. Arrow keys move between tokens to inspect them.`}
      data-mode={run.mode}
      onKeyDown={onKeyDown}
      onMouseLeave={onLeave}
    >
      {run.tokens.map((ev, i) => (
        <Fragment key={i}>
          {forks.get(i)?.map(marker)}
          <Token
            ev={ev}
            table={table}
            domId={tokenDomId(run.mode, i, idPrefix)}
            selected={selected === i}
            focusable={i === current}
            onInspect={inspect}
            inAnswer={answer.has(i)}
          />
        </Fragment>
      ))}
      {pendingForks(run.forks, n).map(marker)}
      {running && !run.done && !run.error && <span className="cursor" aria-hidden="true" />}
      {n === 0 && !running && !run.error && <span className="placeholder">No tokens.</span>}
    </div>
  );
}

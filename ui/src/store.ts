// The state of one generation request (one mode, or several when comparing), as a pure reducer.
import type { DoneEvent, ForkEvent, Mode, StreamEvent, TokenEvent } from "./generated/events";
import { count } from "./format";
import { forkWorkText } from "./forks";

export interface Run {
  mode: Mode;
  tokens: TokenEvent[];
  done?: DoneEvent;
  forks?: ForkEvent[];
  error?: string;
}

export type Status = "idle" | "running" | "done" | "stopped" | "interrupted" | "error";

export interface Session {
  status: Status;
  runs: Run[];
  error?: string; // request-level error (server down, 4xx/5xx, error event without a mode)
}

export type Action =
  | { type: "start"; modes: Mode[] }
  | { type: "events"; events: StreamEvent[] }
  | { type: "finished" }
  | { type: "stopped" }
  | { type: "failed"; message: string }
  | { type: "rejected"; message: string }; // the request was never sent (invalid form)

export const initialSession: Session = { status: "idle", runs: [] };

/** Why a stream that ended by itself left an answer unfinished; undefined when every run ended
 * (done or error). The page's Stop closes the stream and never reads a done, so a done saying
 * "cancelled" is the server's own cut: its per-request time limit, or its shutdown. */
export function cutShort(runs: readonly Run[]): string | undefined {
  if (runs.some((r) => !r.error && r.done?.finish_reason === "cancelled")) {
    return "the server stopped the generation (its per-request time limit, or it shut down).";
  }
  if (runs.some((r) => !r.done && !r.error)) return "the stream ended before the answer was complete.";
  return undefined;
}

function applyEvent(runs: Run[], ev: StreamEvent, session: Session): [Run[], string | undefined] {
  if (ev.type === "error" && !ev.mode) return [runs, ev.message];
  let i = runs.findIndex((r) => r.mode === ev.mode);
  if (i === -1) {
    // A mode the request did not announce: show it rather than drop it.
    runs = [...runs, { mode: ev.mode as Mode, tokens: [] }];
    i = runs.length - 1;
  }
  const run = runs[i];
  let next: Run;
  if (ev.type === "token") {
    const tokens = run.tokens.slice();
    if (ev.index === tokens.length || ev.index < 0 || ev.index > tokens.length) tokens.push(ev);
    else tokens[ev.index] = ev;
    next = { ...run, tokens };
  } else if (ev.type === "done") {
    next = { ...run, done: ev };
  } else if (ev.type === "fork") {
    next = { ...run, forks: [...(run.forks ?? []), ev] };
  } else {
    next = { ...run, error: ev.message };
  }
  const out = runs.slice();
  out[i] = next;
  return [out, session.error];
}

export function reducer(session: Session, action: Action): Session {
  switch (action.type) {
    case "start":
      return { status: "running", runs: action.modes.map((mode) => ({ mode, tokens: [] })) };
    case "events": {
      let runs = session.runs;
      let error = session.error;
      for (const ev of action.events) {
        const [r, e] = applyEvent(runs, ev, { ...session, error });
        runs = r;
        error = e;
      }
      return { ...session, runs, error };
    }
    case "finished": {
      const failed = session.error || session.runs.some((r) => r.error);
      return { ...session, status: failed ? "error" : cutShort(session.runs) ? "interrupted" : "done" };
    }
    case "stopped":
      return { ...session, status: "stopped" };
    case "failed": {
      // Keep what arrived before the failure; a request that produced nothing shows no output.
      const produced = session.runs.some((r) => r.tokens.length > 0 || r.done || r.error);
      return { ...session, runs: produced ? session.runs : [], status: "error", error: action.message };
    }
    case "rejected":
      // Nothing ran: the previous output and status must not stay on show as if current.
      return { status: "error", runs: [], error: action.message };
  }
}

const runsWithTokens = (session: Session) => session.runs.some((r) => r.tokens.length > 0);

/** One-line status for the live region. */
export function statusText(session: Session): string {
  const n = session.runs.reduce((acc, r) => acc + r.tokens.length, 0);
  switch (session.status) {
    case "idle":
      return "Ready.";
    case "running":
      return `Generating… ${count(n, "token")}`;
    case "done": {
      const reasons = session.runs.map((r) => `${r.mode}: ${r.done?.finish_reason ?? "ended"}`);
      const work = session.runs.map((r) => forkWorkText(r.done)).filter(Boolean);
      return `Done (${reasons.join(", ")}), ${count(n, "token")}${work.length ? `; ${work.join("; ")}` : ""}.`;
    }
    case "stopped":
      return `Stopped after ${count(n, "token")}.`;
    case "interrupted":
      return `Interrupted after ${count(n, "token")}: ${cutShort(session.runs) ?? "the answer is incomplete."}`;
    case "error":
      return runsWithTokens(session) ? `Failed after ${count(n, "token")}.` : "Failed.";
  }
}

/** What a screen reader is told: the status, but while generating only that (the count changes
 * with every token: a live region announcing each change would never stop talking). */
export const liveStatus = (text: string, running: boolean): string => (running ? "Generating…" : text);

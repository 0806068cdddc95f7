// A conversation as pure data and pure updates: the thread of user and assistant turns, each
// assistant turn with the runs (one per mode) that the single-prompt view shows, and the chat
// history that the next request sends. Persistence and the network live elsewhere.
import type { Mode, StreamEvent } from "../generated/events";
import { clip } from "../confidence";
import { count } from "../format";
import { cutShort, reducer, type Run, type Session } from "../store";

/** "interrupted": the stream broke off (server gone) or the page was closed mid-answer. */
export type TurnStatus = "running" | "done" | "stopped" | "interrupted" | "error";

/** What an assistant turn was asked with (kept so an export says how each answer was made). */
export interface TurnSettings {
  modes: Mode[];
  max_tokens: number;
  seed: number | null;
  sampler: Record<string, unknown> | null;
  system: string | null;
}

export interface UserTurn {
  role: "user";
  id: string;
  content: string;
}

export interface AssistantTurn {
  role: "assistant";
  id: string;
  status: TurnStatus;
  runs: Run[];
  chosen: Mode; // the run whose text continues the history (compare: the user's pick)
  error?: string;
  settings: TurnSettings;
}

export type Turn = UserTurn | AssistantTurn;

export interface Conversation {
  id: string;
  title: string;
  system: string;
  turns: Turn[];
  created: number; // ms since the epoch
  updated: number;
}

export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}

const TITLE_CHARS = 60;

export function newConversation(id: string, now: number, system = ""): Conversation {
  return { id, title: "New conversation", system, turns: [], created: now, updated: now };
}

export const lastTurn = (c: Conversation): Turn | undefined => c.turns[c.turns.length - 1];

export const isRunning = (c: Conversation): boolean => {
  const t = lastTurn(c);
  return t?.role === "assistant" && t.status === "running";
};

/** The text of the run that continues the history: the chosen one, else the first. */
export function answerText(turn: AssistantTurn): string {
  const run = turn.runs.find((r) => r.mode === turn.chosen) ?? turn.runs[0];
  if (!run) return "";
  // The done event's text is the decoded whole (stop strings removed); a partial answer has
  // only its tokens.
  return run.done ? run.done.text : run.tokens.map((t) => t.text).join("");
}

/**
 * The messages a request sends: every user turn, and every assistant turn's chosen answer,
 * up to (not including) turn `end`. An assistant turn that produced no text is left out
 * (a failed request), so the model never sees an empty answer.
 */
export function history(c: Conversation, end = c.turns.length): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const t of c.turns.slice(0, end)) {
    if (t.role === "user") out.push({ role: "user", content: t.content });
    else {
      const text = answerText(t);
      if (text) out.push({ role: "assistant", content: text });
    }
  }
  return out;
}

function assistantTurn(id: string, settings: TurnSettings): AssistantTurn {
  return {
    role: "assistant",
    id,
    status: "running",
    runs: settings.modes.map((mode) => ({ mode, tokens: [] })),
    chosen: settings.modes[0],
    settings,
  };
}

const titleOf = (c: Conversation): string => {
  const first = c.turns.find((t): t is UserTurn => t.role === "user");
  if (!first) return c.title;
  return clip(first.content.trim().replace(/\s+/g, " "), TITLE_CHARS, "…"); // an emoji kept whole
};

const touched = (c: Conversation, turns: Turn[], now: number): Conversation => {
  const next = { ...c, turns, updated: now };
  return { ...next, title: titleOf(next) };
};

export class ChatError extends Error {}

function mustBeIdle(c: Conversation): void {
  if (isRunning(c)) throw new ChatError("An answer is still being generated: stop it first.");
}

/** A new user message and the (running) answer to it. */
export function send(c: Conversation, content: string, ids: [string, string], settings: TurnSettings, now: number): Conversation {
  mustBeIdle(c);
  if (!content.trim()) throw new ChatError("Type a message first.");
  const user: UserTurn = { role: "user", id: ids[0], content };
  return touched(c, [...c.turns, user, assistantTurn(ids[1], settings)], now);
}

/** Replace the last answer (only it) with a fresh running one to the same history. */
export function regenerate(c: Conversation, id: string, settings: TurnSettings, now: number): Conversation {
  mustBeIdle(c);
  const last = lastTurn(c);
  if (last?.role !== "assistant") throw new ChatError("There is no answer to regenerate.");
  return touched(c, [...c.turns.slice(0, -1), assistantTurn(id, settings)], now);
}

/** Change the last user message and answer it afresh (its old answer is dropped). */
export function editLast(c: Conversation, content: string, id: string, settings: TurnSettings, now: number): Conversation {
  mustBeIdle(c);
  if (!content.trim()) throw new ChatError("The message is empty.");
  let i = c.turns.length - 1;
  while (i >= 0 && c.turns[i].role !== "user") i--;
  if (i < 0) throw new ChatError("There is no message to edit.");
  const user: UserTurn = { ...(c.turns[i] as UserTurn), content };
  return touched(c, [...c.turns.slice(0, i), user, assistantTurn(id, settings)], now);
}

/**
 * Compare mode: which answer continues the conversation. Only the last answer's pick can
 * change; an earlier pick is what later turns were generated from, so it stays.
 */
export function choose(c: Conversation, turnId: string, mode: Mode, now: number): Conversation {
  const last = lastTurn(c);
  if (last?.role !== "assistant" || last.id !== turnId) throw new ChatError("Only the last answer's pick can change.");
  if (last.status === "running") throw new ChatError("Wait for the answers to finish.");
  if (!last.runs.some((r) => r.mode === mode)) throw new ChatError(`No ${mode} answer in this turn.`);
  return touched(c, [...c.turns.slice(0, -1), { ...last, chosen: mode }], now);
}

export type RunAction =
  | { type: "events"; events: StreamEvent[] }
  | { type: "finished" }
  | { type: "stopped" }
  | { type: "failed"; message: string };

/** Once an answer ends: the first mode continues unless it produced nothing and another did. */
function defaultPick(chosen: Mode, runs: Run[], status: TurnStatus): Mode {
  if (status === "running" || runs.find((r) => r.mode === chosen)?.tokens.length) return chosen;
  return runs.find((r) => r.tokens.length)?.mode ?? chosen;
}

/** Stream progress on assistant turn `turnId`, through the single-prompt view's reducer. */
export function onRun(c: Conversation, turnId: string, action: RunAction, now: number): Conversation {
  const i = c.turns.findIndex((t) => t.id === turnId);
  const turn = c.turns[i];
  if (!turn || turn.role !== "assistant") return c; // e.g. replaced by a regenerate meanwhile
  const session: Session = { status: turn.status === "running" ? "running" : "done", runs: turn.runs, error: turn.error };
  const next = reducer(session, action);
  let status: TurnStatus = turn.status;
  let error = next.error;
  if (action.type === "finished") {
    // A stream that ended before every mode said done (or failed): the server went away, or
    // it cut the answer short (its time limit, its shutdown).
    const cut = cutShort(next.runs);
    if (next.status === "error") status = "error";
    else if (cut) {
      status = "interrupted";
      error = cut[0].toUpperCase() + cut.slice(1);
    } else status = "done";
  }
  else if (action.type === "stopped") status = "stopped";
  else if (action.type === "failed") {
    const produced = turn.runs.some((r) => r.tokens.length > 0);
    status = produced ? "interrupted" : "error";
  }
  const runs = action.type === "failed" ? turn.runs : next.runs; // keep a partial answer
  const updated: AssistantTurn = { ...turn, runs, status, error, chosen: defaultPick(turn.chosen, runs, status) };
  if (updated.error === undefined) delete updated.error;
  const turns = c.turns.slice();
  turns[i] = updated;
  return { ...c, turns, updated: now };
}

/** After a reload: an answer that was still streaming when the page went away is interrupted. */
export function settleRunning(c: Conversation): Conversation {
  if (!c.turns.some((t) => t.role === "assistant" && t.status === "running")) return c;
  return {
    ...c,
    turns: c.turns.map((t) =>
      t.role === "assistant" && t.status === "running"
        ? { ...t, status: "interrupted", error: t.error ?? "The page was closed before the answer finished." }
        : t,
    ),
  };
}

/** One line for the live status region. */
export function turnStatusText(turn: AssistantTurn | undefined): string {
  if (!turn) return "Ready.";
  const n = turn.runs.reduce((acc, r) => acc + r.tokens.length, 0);
  switch (turn.status) {
    case "running":
      return `Generating… ${count(n, "token")}`;
    case "done":
      return `Done, ${count(n, "token")}.`;
    case "stopped":
      return `Stopped after ${count(n, "token")}.`;
    case "interrupted":
      return `Interrupted after ${count(n, "token")}${turn.error ? `: ${turn.error}` : "."}`;
    case "error":
      return "Failed.";
  }
}

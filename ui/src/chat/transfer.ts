// Export a conversation as JSON (its messages, plus every turn with every token's metrics) and
// import one back. An import is checked field by field before anything changes: a bad file
// gives one message naming the first wrong field, and the caller keeps what it had.
import { ACTIONS, STATES, type Mode } from "../generated/events";
import { history, settleRunning, type Conversation, type TurnStatus } from "./conversation";

export const FORMAT = "mlx-entropix-conversation";
export const VERSION = 1;
export const MAX_IMPORT_BYTES = 50 * 1024 * 1024;

export interface ExportFile {
  format: typeof FORMAT;
  version: typeof VERSION;
  exported_at: string;
  /** The history as the next request would send it (system first, if any). */
  messages: { role: "system" | "user" | "assistant"; content: string }[];
  conversation: Conversation;
}

export function exportConversation(c: Conversation, now: Date = new Date()): ExportFile {
  const system = c.system.trim() ? [{ role: "system" as const, content: c.system }] : [];
  return { format: FORMAT, version: VERSION, exported_at: now.toISOString(), messages: [...system, ...history(c)], conversation: c };
}

export const exportJSON = (c: Conversation, now?: Date): string => JSON.stringify(exportConversation(c, now), null, 1);

/** A file name for the download: the title's words, safe on every file system. */
export function exportFileName(c: Conversation): string {
  const words = c.title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  return `conversation-${words || "untitled"}.json`;
}

export class ImportError extends Error {
  constructor(message: string) {
    super(`Cannot import this file: ${message}`);
    this.name = "ImportError";
  }
}

// ---------------------------------------------------------------- checks
type Obj = Record<string, unknown>;
const MODES: readonly Mode[] = ["entropix", "normal", "greedy", "fork"];
const STATUSES: readonly TurnStatus[] = ["running", "done", "stopped", "interrupted", "error"];

function fail(path: string, what: string): never {
  throw new ImportError(`${path} ${what}.`);
}
function obj(v: unknown, path: string): Obj {
  if (!v || typeof v !== "object" || Array.isArray(v)) fail(path, "should be an object");
  return v as Obj;
}
function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) fail(path, "should be a list");
  return v;
}
function str(o: Obj, k: string, path: string): string {
  if (typeof o[k] !== "string") fail(`${path}.${k}`, "should be a string");
  return o[k] as string;
}
function num(o: Obj, k: string, path: string, opts: { int?: boolean; nullable?: boolean } = {}): void {
  const v = o[k];
  if (v === null && opts.nullable) return;
  if (typeof v !== "number" || !Number.isFinite(v) || (opts.int && !Number.isInteger(v))) {
    fail(`${path}.${k}`, opts.int ? "should be a whole number" : "should be a number");
  }
}
function oneOf<T extends string>(o: Obj, k: string, allowed: readonly T[], path: string): T {
  const v = o[k];
  if (typeof v !== "string" || !allowed.includes(v as T)) fail(`${path}.${k}`, `should be one of ${allowed.join(", ")}`);
  return v as T;
}

const METRIC_KEYS = ["entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement", "interaction_strength"];
const PARAM_KEYS = ["temperature", "top_p", "top_k", "min_p", "n_samples"];

function checkMetrics(v: unknown, path: string): void {
  const m = obj(v, path);
  for (const k of METRIC_KEYS) num(m, k, path, { nullable: k.startsWith("attn") || k === "agreement" || k === "interaction_strength" });
}

function checkTop(v: unknown, path: string): void {
  const t = obj(v, path);
  num(t, "id", path, { int: true });
  str(t, "text", path);
  num(t, "logprob", path);
}

function checkToken(v: unknown, path: string, mode: Mode, index: number): void {
  const t = obj(v, path);
  if (t.type !== "token") fail(`${path}.type`, 'should be "token"');
  if (t.mode !== mode) fail(`${path}.mode`, `should be "${mode}" (its run's mode)`);
  num(t, "index", path, { int: true });
  if (t.index !== index) fail(`${path}.index`, `should be ${index}`);
  num(t, "id", path, { int: true });
  str(t, "text", path);
  oneOf(t, "state", STATES, path);
  oneOf(t, "action", ACTIONS, path);
  checkMetrics(t.metrics, `${path}.metrics`);
  const p = obj(t.params, `${path}.params`);
  for (const k of PARAM_KEYS) num(p, k, `${path}.params`);
  num(t, "logprob", path);
  arr(t.top, `${path}.top`).forEach((x, i) => checkTop(x, `${path}.top[${i}]`));
  num(t, "elapsed_s", path);
}

function checkDone(v: unknown, path: string, mode: Mode): void {
  const d = obj(v, path);
  if (d.type !== "done") fail(`${path}.type`, 'should be "done"');
  if (d.mode !== mode) fail(`${path}.mode`, `should be "${mode}" (its run's mode)`);
  str(d, "text", path);
  str(d, "finish_reason", path);
  for (const k of ["prompt_tokens", "generated_tokens", "tokens_computed", "forks"]) num(d, k, path, { int: true });
  for (const k of ["ttft_s", "total_s", "prefill_tok_s", "decode_tok_s"]) num(d, k, path);
  num(d, "seed", path, { int: true, nullable: true });
  for (const k of ["state_counts", "action_counts"]) {
    const counts = obj(d[k], `${path}.${k}`);
    for (const c of Object.keys(counts)) num(counts, c, `${path}.${k}`, { int: true });
  }
}

function checkFork(v: unknown, path: string, mode: Mode): void {
  const f = obj(v, path);
  if (f.type !== "fork") fail(`${path}.type`, 'should be "fork"');
  if (f.mode !== mode) fail(`${path}.mode`, `should be "${mode}" (its run's mode)`);
  for (const k of ["index", "kept", "tokens_computed"]) num(f, k, path, { int: true });
  str(f, "trigger", path);
  str(f, "score", path);
  checkMetrics(f.metrics, `${path}.metrics`);
  const branches = arr(f.branches, `${path}.branches`);
  if (!branches.length) fail(`${path}.branches`, "should not be empty");
  branches.forEach((x, i) => {
    const bp = `${path}.branches[${i}]`;
    const b = obj(x, bp);
    checkTop(b.token, `${bp}.token`);
    str(b, "text", bp);
    num(b, "tokens", bp, { int: true });
    num(b, "score", bp);
    if (b.answer !== null && typeof b.answer !== "string") fail(`${bp}.answer`, "should be a string or null");
    if (typeof b.kept !== "boolean") fail(`${bp}.kept`, "should be true or false");
  });
}

function checkRun(v: unknown, path: string): Mode {
  const r = obj(v, path);
  const mode = oneOf(r, "mode", MODES, path);
  arr(r.tokens, `${path}.tokens`).forEach((t, i) => checkToken(t, `${path}.tokens[${i}]`, mode, i));
  if (r.done !== undefined) checkDone(r.done, `${path}.done`, mode);
  if (r.forks !== undefined) arr(r.forks, `${path}.forks`).forEach((f, i) => checkFork(f, `${path}.forks[${i}]`, mode));
  if (r.error !== undefined) str(r, "error", path);
  return mode;
}

function checkSettings(v: unknown, path: string): void {
  const s = obj(v, path);
  const modes = arr(s.modes, `${path}.modes`);
  if (!modes.length) fail(`${path}.modes`, "should not be empty");
  modes.forEach((m, i) => {
    if (!MODES.includes(m as Mode)) fail(`${path}.modes[${i}]`, `should be one of ${MODES.join(", ")}`);
  });
  num(s, "max_tokens", path, { int: true });
  num(s, "seed", path, { int: true, nullable: true });
  if (s.sampler !== null) obj(s.sampler, `${path}.sampler`);
  if (s.system !== null) str(s, "system", path);
}

function checkConversation(v: unknown): Conversation {
  const path = "conversation";
  const c = obj(v, path);
  str(c, "id", path);
  str(c, "title", path);
  str(c, "system", path);
  num(c, "created", path);
  num(c, "updated", path);
  const turns = arr(c.turns, `${path}.turns`);
  const ids = new Set<string>();
  turns.forEach((x, i) => {
    const tp = `${path}.turns[${i}]`;
    const t = obj(x, tp);
    const id = str(t, "id", tp);
    if (ids.has(id)) fail(`${tp}.id`, `repeats "${id}"`);
    ids.add(id);
    // The thread alternates: a user message, then its answer.
    const role = oneOf(t, "role", ["user", "assistant"] as const, tp);
    if (role !== (i % 2 === 0 ? "user" : "assistant")) fail(`${tp}.role`, `should be "${i % 2 === 0 ? "user" : "assistant"}" (turns alternate, starting with the user)`);
    if (role === "user") {
      str(t, "content", tp);
      return;
    }
    oneOf(t, "status", STATUSES, tp);
    const runs = arr(t.runs, `${tp}.runs`);
    const modes = runs.map((r, j) => checkRun(r, `${tp}.runs[${j}]`));
    if (new Set(modes).size !== modes.length) fail(`${tp}.runs`, "should not repeat a mode");
    const chosen = oneOf(t, "chosen", MODES, tp);
    if (modes.length && !modes.includes(chosen)) fail(`${tp}.chosen`, `should be one of this turn's modes (${modes.join(", ")})`);
    if (t.error !== undefined) str(t, "error", tp);
    checkSettings(t.settings, `${tp}.settings`);
  });
  return c as unknown as Conversation;
}

/**
 * Parse and check an exported file. Returns the conversation under a new id (so an import
 * never overwrites a saved conversation); an answer saved mid-stream comes back interrupted.
 */
export function importConversation(text: string, newId: string): Conversation {
  if (text.length > MAX_IMPORT_BYTES) throw new ImportError(`it is larger than ${MAX_IMPORT_BYTES / 1024 / 1024} MB.`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ImportError(`it is not JSON (${err instanceof Error ? err.message : String(err)}).`);
  }
  const file = obj(data, "the file");
  if (file.format !== FORMAT) throw new ImportError(`it is not an exported conversation (no "format": "${FORMAT}").`);
  if (file.version !== VERSION) throw new ImportError(`its version ${JSON.stringify(file.version)} is not ${VERSION}.`);
  const c = checkConversation(file.conversation);
  return settleRunning({ ...structuredClone(c), id: newId });
}

// Pure formatting and labelling helpers (unit-tested; no React here).
import {
  ACTION_INFO,
  METRIC_INFO,
  STATE_INFO,
  STATES,
  type Action,
  type Label,
  type Metrics,
  type Mode,
  type State,
  type StateInfo,
  type TokenEvent,
} from "./generated/events";

export type StateTable = Record<State, StateInfo>;

/** State info from /api/config when loaded, else the generated copy of the same table. */
export function stateTable(fromServer?: Record<string, StateInfo>): StateTable {
  const table = { ...STATE_INFO };
  if (fromServer) for (const s of STATES) if (fromServer[s]) table[s] = fromServer[s];
  return table;
}

export function stateColour(state: string, table: StateTable = STATE_INFO): string {
  return (table as Record<string, StateInfo>)[state]?.colour ?? "#999999";
}

export function stateLabel(state: string, table: StateTable = STATE_INFO): string {
  return (table as Record<string, StateInfo>)[state]?.label ?? state;
}

/** A hex colour with alpha, for token backgrounds that keep the text readable. */
export function withAlpha(hex: string, alpha: number): string {
  const a = Math.round(Math.min(1, Math.max(0, alpha)) * 255)
    .toString(16)
    .padStart(2, "0");
  return /^#[0-9a-fA-F]{6}$/.test(hex) ? `${hex}${a}` : hex;
}

// Labels come from the one schema (mlx_entropix/events.py, generated into events.ts).
export const ACTION_LABELS: Record<string, string> = Object.fromEntries(
  Object.entries(ACTION_INFO).map(([k, v]) => [k, v.label]),
);

// Normal mode samples too, but with the fixed base parameters: "adjusted" would be untrue there.
const ACTION_BY_MODE: Partial<Record<Mode, Partial<Record<Action, string>>>> = {
  normal: { sample: "sample (drew with the fixed base parameters)" },
};

/** The action in words, as it applies in the token's mode. */
export function actionLabel(action: string, mode: Mode): string {
  return ACTION_BY_MODE[mode]?.[action as Action] ?? ACTION_LABELS[action] ?? action;
}

export const METRIC_LABELS: Record<keyof Metrics, Label> = METRIC_INFO;

/** "1 token", "0 tokens", "2 branches": a count with its noun, singular for exactly one. */
export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** A metric with 3 significant digits, fixed notation for ordinary magnitudes. */
export function formatNumber(x: number | null | undefined, digits = 3): string {
  // null: a metric the model cannot report (attention not observable for its family).
  if (x === null || x === undefined) return "unavailable";
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1e4 || abs < 1e-3) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

/** exp(logprob) as a percentage. */
export function formatProb(logprob: number): string {
  const p = Math.exp(logprob) * 100;
  if (p >= 99.95) return "100%";
  if (p >= 10) return `${p.toFixed(1)}%`;
  if (p >= 0.1) return `${p.toFixed(2)}%`;
  if (p > 0) return `${p.toExponential(1)}%`;
  return "0%";
}

export function formatSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return "–";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

export function formatRate(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r) || r <= 0) return "–";
  return `${r.toFixed(1)} tok/s`;
}

/** Token text as a JSON-ish literal for the inspector ("\n" shown as \n, quotes kept). */
export function quoteToken(text: string): string {
  return JSON.stringify(text);
}

/** The state as words, for aria-label and tooltip: colour is never the only carrier. */
export function tokenDescription(ev: TokenEvent, table: StateTable = STATE_INFO): string {
  return `${quoteToken(ev.text)}: ${stateLabel(ev.state, table)}, entropy ${formatNumber(
    ev.metrics.entropy,
  )}, varentropy ${formatNumber(ev.metrics.varentropy)}`;
}

/** Per-state counts of the tokens so far (all states present, zero or more). */
export function countStates(tokens: readonly TokenEvent[]): Record<State, number> {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<State, number>;
  for (const t of tokens) counts[t.state] = (counts[t.state] ?? 0) + 1;
  return counts;
}

/** Live decode rate: tokens after the first over the time since the first. */
export function liveRate(tokens: readonly TokenEvent[]): number | undefined {
  if (tokens.length < 2) return undefined;
  const dt = tokens[tokens.length - 1].elapsed_s - tokens[0].elapsed_s;
  return dt > 0 ? (tokens.length - 1) / dt : undefined;
}

// The HTTP API of mlx_server.py (same origin; the dev server proxies /api to it).
import type { DoneEvent, ErrorEvent, ForkEvent, Mode, SamplerConfig, StateInfo, StreamEvent, TokenEvent } from "./generated/events";
import { readSSE } from "./sse";

export const START_HINT = "Start it with `uv run mlx_server.py` (from the repository root).";

export interface Prompt {
  name: string;
  category: string;
  prompt: string;
  answer: string;
}

export interface PresetInfo {
  summary: string;
  overrides: Partial<SamplerConfig>;
}

export interface ApiConfig {
  defaults: SamplerConfig;
  states: Record<string, StateInfo>;
  presets?: Record<string, PresetInfo>;
}

export interface GenerateRequest {
  prompt?: string;
  messages?: { role: "system" | "user" | "assistant"; content: string }[]; // not with prompt
  system?: string | null;
  mode?: Mode;
  modes?: Mode[];
  max_tokens: number;
  seed?: number | null;
  sampler?: Partial<SamplerConfig> | null;
  preset?: string;
  top_logprobs?: number;
}

/** An error to show the user as one line. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** FastAPI's `detail` is a string, or for validation errors a list of {loc, msg}. */
export function detailMessage(body: unknown): string | undefined {
  if (!body || typeof body !== "object" || !("detail" in body)) return undefined;
  const detail = (body as { detail: unknown }).detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    const parts = detail.map((d) => {
      if (d && typeof d === "object" && "msg" in d) {
        const loc = Array.isArray((d as { loc?: unknown }).loc)
          ? ((d as { loc: unknown[] }).loc.filter((x) => x !== "body").join("."))
          : "";
        return loc ? `${loc}: ${(d as { msg: string }).msg}` : String((d as { msg: string }).msg);
      }
      return JSON.stringify(d);
    });
    return parts.join("; ");
  }
  return detail == null ? undefined : JSON.stringify(detail);
}

async function errorFromResponse(res: Response): Promise<ApiError> {
  let message: string | undefined;
  const text = await res.text().catch(() => "");
  try {
    message = detailMessage(JSON.parse(text));
  } catch {
    message = undefined;
  }
  const retry = res.headers.get("retry-after");
  if (!message) {
    // The dev-server proxy answers 502/504 when mlx_server.py is not running.
    if (res.status === 502 || res.status === 504) {
      return new ApiError(`The API server is not reachable (HTTP ${res.status}). ${START_HINT}`, res.status);
    }
    message = text.trim().slice(0, 200) || res.statusText || "no details";
  }
  // The server's own message may already say when to retry ("queue full; retry in 5 s"):
  // name the wait once.
  const suffix = retry && !/\bretry\b/i.test(message) ? ` Retry in ${retry} s.` : "";
  return new ApiError(`Server answered ${res.status}: ${message}${suffix}`, res.status);
}

async function request(url: string, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(`Cannot reach the server (${url}). ${START_HINT}`);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res;
}

export async function getJSON<T>(url: string): Promise<T> {
  const res = await request(url);
  return (await res.json()) as T;
}

export const getConfig = () => getJSON<ApiConfig>("/api/config");
export const getPrompts = () => getJSON<Prompt[]>("/api/prompts");

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

const STREAM_EVENTS = new Set<string>(["token", "fork", "done", "error"] satisfies StreamEvent["type"][]);

/** Parse one SSE message into an event; unknown event names are ignored. */
export function parseEvent(name: string, data: string): StreamEvent | undefined {
  if (!STREAM_EVENTS.has(name)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new ApiError(`The server sent a malformed ${name} event.`);
  }
  const event = value as TokenEvent | ForkEvent | DoneEvent | ErrorEvent;
  return { ...event, type: name } as StreamEvent;
}

/**
 * POST a generation and call `onEvent` for each event as it arrives. Resolves when the stream
 * ends; rejects with ApiError (shown to the user) or an AbortError (the stop button).
 */
export async function streamGeneration(
  path: "/api/generate" | "/api/compare",
  body: GenerateRequest,
  onEvent: (event: StreamEvent) => void,
  signal?: AbortSignal,
): Promise<void> {
  const res = await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.body) throw new ApiError("The server sent an empty response.");
  try {
    for await (const msg of readSSE(res.body)) {
      const event = parseEvent(msg.event, msg.data);
      if (event) onEvent(event);
    }
  } catch (err) {
    if (isAbort(err) || err instanceof ApiError) throw err;
    if (signal?.aborted) throw new DOMException("Aborted", "AbortError");
    throw new ApiError(`The stream broke off: ${err instanceof Error ? err.message : String(err)}`);
  }
}

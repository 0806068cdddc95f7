// The request for one assistant turn: the whole history as chat messages, with the settings
// checked exactly as the single-prompt form checks them.
import type { GenerateRequest } from "../api";
import type { Mode, SamplerConfig } from "../generated/events";
import { buildRequest, MAX_TOKENS } from "../request";
import type { FormValues } from "../components/PromptForm";
import { history, type Conversation, type TurnSettings } from "./conversation";

export type ChatValues = Omit<FormValues, "prompt" | "system">;

export type Checked = { ok: true; settings: TurnSettings; path: "/api/generate" | "/api/compare" } | { ok: false; error: string };

/** Validate the settings (max tokens, seed, mode) before a turn is added. */
export function checkSettings(
  values: ChatValues,
  system: string,
  sampler: Partial<SamplerConfig> | null,
  limit = MAX_TOKENS,
): Checked {
  const built = buildRequest({ ...values, prompt: "-", system }, sampler, "", limit);
  if (!built.ok) return built;
  const b = built.body;
  return {
    ok: true,
    path: built.path,
    settings: { modes: built.modes, max_tokens: b.max_tokens, seed: b.seed ?? null, sampler: sampler ?? null, system: b.system ?? null },
  };
}

/** The body that asks for assistant turn `turnId`: the history before it, and its settings. */
export function turnRequest(c: Conversation, turnId: string): { path: "/api/generate" | "/api/compare"; body: GenerateRequest } {
  const i = c.turns.findIndex((t) => t.id === turnId);
  const turn = c.turns[i];
  if (!turn || turn.role !== "assistant") throw new Error(`no assistant turn ${turnId}`);
  const s = turn.settings;
  const body: GenerateRequest = {
    messages: history(c, i),
    system: s.system,
    max_tokens: s.max_tokens,
    seed: s.seed,
    sampler: s.sampler as Partial<SamplerConfig> | null,
    top_logprobs: 5,
  };
  if (s.modes.length > 1) return { path: "/api/compare", body: { ...body, modes: s.modes } };
  return { path: "/api/generate", body: { ...body, mode: s.modes[0] as Mode } };
}

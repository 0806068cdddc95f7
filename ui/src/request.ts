// Form values -> API request, validated before anything is sent.
import type { GenerateRequest } from "./api";
import type { Mode, SamplerConfig } from "./generated/events";
import type { FormValues } from "./components/PromptForm";

export const COMPARE_MODES: Mode[] = ["entropix", "normal"];
export const MAX_TOKENS = 4096; // the API's own cap; a server's --max-tokens may be lower

/** Form values whose max tokens is over the server's limit (`/api/info` `limits.max_tokens`)
 * brought down to it (the same object when it is not): a server started with `--max-tokens 64`
 * answered the form's default 96 with a 400. */
export function withTokenLimit<T extends { maxTokens: string }>(values: T, limit: number): T {
  const n = Number(values.maxTokens);
  return Number.isFinite(n) && n > limit ? { ...values, maxTokens: String(limit) } : values;
}

export type BuiltRequest =
  | { ok: true; path: "/api/generate" | "/api/compare"; body: GenerateRequest; modes: Mode[] }
  | { ok: false; error: string };

export function buildRequest(
  values: FormValues,
  sampler: Partial<SamplerConfig> | null,
  preset = "",
  limit = MAX_TOKENS,
): BuiltRequest {
  if (!values.prompt.trim()) return { ok: false, error: "Type a prompt (or choose a built-in one) first." };
  const maxTokens = Number(values.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > limit) {
    const whose = limit < MAX_TOKENS ? " (this server's limit)" : "";
    return { ok: false, error: `Max tokens must be a whole number from 1 to ${limit}${whose}.` };
  }
  let seed: number | null = null;
  if (values.seed.trim() !== "") {
    seed = Number(values.seed);
    if (!Number.isSafeInteger(seed) || seed < 0) return { ok: false, error: "Seed must be a whole number ≥ 0 (or empty for random)." };
  }
  const body: GenerateRequest = {
    prompt: values.prompt,
    system: values.system.trim() ? values.system : null,
    max_tokens: maxTokens,
    seed,
    sampler,
    top_logprobs: 5,
    ...(preset ? { preset } : {}),
  };
  if (values.mode === "compare") {
    return { ok: true, path: "/api/compare", body: { ...body, modes: COMPARE_MODES }, modes: COMPARE_MODES };
  }
  return { ok: true, path: "/api/generate", body: { ...body, mode: values.mode }, modes: [values.mode] };
}

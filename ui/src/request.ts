// Form values -> API request, validated before anything is sent.
import type { GenerateRequest } from "./api";
import type { Mode, SamplerConfig } from "./generated/events";
import type { FormValues } from "./components/PromptForm";

export const COMPARE_MODES: Mode[] = ["entropix", "normal"];

export type BuiltRequest =
  | { ok: true; path: "/api/generate" | "/api/compare"; body: GenerateRequest; modes: Mode[] }
  | { ok: false; error: string };

export function buildRequest(values: FormValues, sampler: Partial<SamplerConfig> | null, preset = ""): BuiltRequest {
  if (!values.prompt.trim()) return { ok: false, error: "Type a prompt (or choose a built-in one) first." };
  const maxTokens = Number(values.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 4096) {
    return { ok: false, error: "Max tokens must be a whole number from 1 to 4096." };
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

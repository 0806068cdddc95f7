// Sampler overrides from the settings panel: edited text fields -> validated `sampler` body.
import type { SamplerConfig } from "./generated/events";

export type Edits = Partial<Record<keyof SamplerConfig, string | null>>;

const INT_FIELDS = new Set<string>(["top_k", "n_adaptive_samples"]);

export const SAMPLER_GROUPS: { title: string; match: (k: string) => boolean }[] = [
  { title: "Base sampling (also normal mode)", match: (k) => ["temperature", "top_p", "top_k", "min_p"].includes(k) },
  { title: "State thresholds", match: (k) => ["low_ent", "low_vent", "med_ent", "high_ent", "high_vent"].includes(k) },
  { title: "Per-state adjustments", match: (k) => /^(helv|lehv|hehv)_/.test(k) || k === "clarifying_token" },
  { title: "Adaptive (middle ground)", match: (k) => k === "n_adaptive_samples" || k.startsWith("ada_") },
];

export interface Overrides {
  sampler: Partial<SamplerConfig> | null; // null: nothing changed
  errors: Partial<Record<keyof SamplerConfig, string>>;
}

/** Turn the panel's edits into overrides, keeping only fields that differ from the defaults. */
export function samplerOverrides(defaults: SamplerConfig | null, edits: Edits): Overrides {
  const sampler: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  if (!defaults) return { sampler: null, errors };
  for (const [key, raw] of Object.entries(edits)) {
    if (!(key in defaults) || raw === undefined) continue;
    const def = (defaults as unknown as Record<string, unknown>)[key];
    let value: unknown = raw;
    if (typeof def === "number") {
      const text = (raw ?? "").trim();
      const n = Number(text);
      if (text === "" || !Number.isFinite(n)) {
        errors[key] = "not a number";
        continue;
      }
      if (INT_FIELDS.has(key) && !Number.isInteger(n)) {
        errors[key] = "must be a whole number";
        continue;
      }
      value = n;
    }
    if (value !== def) sampler[key] = value;
  }
  return {
    sampler: Object.keys(sampler).length ? (sampler as Partial<SamplerConfig>) : null,
    errors: errors as Overrides["errors"],
  };
}

/** The thresholds in force: defaults with any valid edits applied. */
export function effectiveConfig(defaults: SamplerConfig | null, overrides: Partial<SamplerConfig> | null) {
  return defaults ? { ...defaults, ...(overrides ?? {}) } : null;
}

// Sampler overrides from the settings panel: edited text fields -> validated `sampler` body.
import type { SamplerConfig } from "./generated/events";

export type Edits = Partial<Record<keyof SamplerConfig, string | null>>;

const INT_FIELDS = new Set<string>(["top_k", "n_adaptive_samples", "fork_branches", "fork_max_forks", "fork_branch_tokens"]);

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
    if (Array.isArray(def)) {
      // A list field (greedy_states): comma-separated names; the server checks them.
      value = (raw ?? "").split(",").map((x) => x.trim()).filter(Boolean);
      if (JSON.stringify(value) !== JSON.stringify(def)) sampler[key] = value;
      continue;
    }
    // A field whose default is null (no answer reader, no cue) shows empty: emptied again, it is
    // that default, not "" (which the server refuses as a reader, or would append as a cue).
    if (def === null && (raw ?? "").trim() === "") value = null;
    else if (typeof def === "boolean") value = raw === "true";
    else if (typeof def === "number") {
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

/** The settings a request starts from: the server's defaults, then the chosen preset's
 * overrides (as the server applies them). The panel shows these and sends what differs, so a
 * field set back to the default wins over the preset, as the panel promises. */
export function presetBase(
  defaults: SamplerConfig | null,
  presets: Record<string, { overrides: Partial<SamplerConfig> }> | undefined,
  preset: string,
): SamplerConfig | null {
  const chosen = preset ? presets?.[preset] : undefined;
  return defaults && chosen ? { ...defaults, ...chosen.overrides } : defaults;
}

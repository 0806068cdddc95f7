// Names people read for SamplerConfig's fields: label and unit here, the description and the
// choices from the generated schema (SAMPLER_DESCRIPTIONS, SAMPLER_CHOICES); the raw key is the
// tooltip. A field without an entry here still shows, under its key with spaces.
import { SAMPLER_DESCRIPTIONS, STATE_INFO, type Label, type SamplerConfig } from "./generated/events";

type Key = keyof SamplerConfig;

export const SAMPLER_LABELS: Partial<Record<Key, Label>> = {
  temperature: { label: "Temperature T₀", unit: "" },
  top_p: { label: "Top-p (nucleus)", unit: "prob. mass" },
  top_k: { label: "Top-k", unit: "tokens" },
  min_p: { label: "Min-p", unit: "× p(top)" },
  low_ent: { label: "Low entropy below", unit: "bits" },
  low_vent: { label: "Low varentropy below", unit: "bits²" },
  med_ent: { label: "Mist entropy above", unit: "bits" },
  high_ent: { label: "High entropy above", unit: "bits" },
  high_vent: { label: "High varentropy above", unit: "bits²" },
  // T = T0 (offset + coef * attention entropy)
  helv_attn_ent_offset: { label: "Temperature base", unit: "× T₀" },
  helv_attn_ent_coef: { label: "Temperature per attention-entropy bit", unit: "× T₀/bit" },
  clarifying_token: { label: "Clarifying token", unit: "" },
  // T = T0 (offset + coef * interaction strength)
  lehv_interaction_strength_offset: { label: "Temperature base", unit: "× T₀" },
  lehv_interaction_strength_coef: { label: "Temperature per unit of interaction strength", unit: "× T₀" },
  // T = T0 (offset + coef * attention varentropy); top_p - coef * attention entropy
  hehv_attn_vent_offset: { label: "Temperature base", unit: "× T₀" },
  hehv_attn_vent_coef: { label: "Temperature per attention-varentropy bit²", unit: "× T₀/bit²" },
  hehv_attn_ent_coef: { label: "Top-p cut per attention-entropy bit", unit: "/bit" },
  mist_min_temperature: { label: "Temperature at least", unit: "" },
  n_adaptive_samples: { label: "Draws (best of n)", unit: "draws" },
  ada_temp_offset: { label: "Temperature base", unit: "× T₀" },
  ada_temp_logits: { label: "Temperature gain from logits uncertainty", unit: "/bit" },
  ada_temp_attn: { label: "Temperature gain from attention uncertainty", unit: "/bit" },
  ada_temp_agree: { label: "Temperature cut from head disagreement", unit: "" },
  ada_top_p: { label: "Top-p gain from attention varentropy", unit: "/bit²" },
  ada_top_k_int: { label: "Top-k gain from interaction strength", unit: "" },
  ada_top_k_agree: { label: "Top-k cut from head disagreement", unit: "" },
  ada_min_p_offset: { label: "Min-p base", unit: "× min-p" },
  ada_min_p: { label: "Min-p cut from logits uncertainty", unit: "/bit" },
  greedy_states: { label: "States taking the argmax instead", unit: "comma-separated" },
  fork_trigger: { label: "Fork at", unit: "" },
  fork_max_entropy: { label: "No fork at entropy above", unit: "bits" },
  fork_branches: { label: "Branches per fork", unit: "branches" },
  fork_max_forks: { label: "Forks per answer at most", unit: "forks" },
  fork_branch_tokens: { label: "Tokens per branch at most", unit: "tokens" },
  fork_score: { label: "Branch score", unit: "" },
  fork_aggregate: { label: "Add up scores of equal answers", unit: "" },
  fork_answer_kind: { label: "Answer reader (numeric, choice, yesno, exact, contains)", unit: "" },
  fork_answer_cue: { label: "Answer cue (no reader)", unit: "" },
  fork_cue_tokens: { label: "Tokens read after the cue at most", unit: "tokens" },
  fork_at_answer: { label: "Also fork at the answer", unit: "" },
  fork_answer_signal: { label: "Answer fork where this is highest", unit: "" },
  fork_answer_min: { label: "Answer fork at signal from", unit: "bits² or bits" },
  fork_answer_branches: { label: "Branches per answer fork", unit: "branches" },
  fork_answer_sites: { label: "Answer fork sites", unit: "" },
  fork_answer_from: { label: "Answer forks of", unit: "" },
};

const state = (s: keyof typeof STATE_INFO) => STATE_INFO[s].label;

export const SAMPLER_GROUPS: { title: string; match: (k: string) => boolean }[] = [
  { title: "Base sampling (also normal mode)", match: (k) => ["temperature", "top_p", "top_k", "min_p"].includes(k) },
  { title: "State thresholds", match: (k) => ["low_ent", "low_vent", "med_ent", "high_ent", "high_vent"].includes(k) },
  { title: `${state("treading")} (high entropy, low varentropy)`, match: (k) => k.startsWith("helv_") || k === "clarifying_token" },
  { title: `${state("exploring")} (low entropy, high varentropy)`, match: (k) => k.startsWith("lehv_") },
  { title: `${state("resampling")} (high entropy, high varentropy)`, match: (k) => k.startsWith("hehv_") || k === "mist_min_temperature" },
  { title: `${state("adaptive")} (adaptive)`, match: (k) => k === "n_adaptive_samples" || k.startsWith("ada_") },
  { title: "Branches (fork mode)", match: (k) => k.startsWith("fork_") },
  { title: "Ablation", match: (k) => k === "greedy_states" },
];

/** Group title -> keys, every key of `defaults` exactly once (unknown keys in a last group). */
export function groupFields(keys: readonly string[]): { title: string; keys: Key[] }[] {
  const seen = new Set<string>();
  const groups = SAMPLER_GROUPS.map((g) => {
    const ks = keys.filter((k) => !seen.has(k) && g.match(k));
    ks.forEach((k) => seen.add(k));
    return { title: g.title, keys: ks as Key[] };
  });
  const rest = keys.filter((k) => !seen.has(k)) as Key[];
  if (rest.length) groups.push({ title: "Other", keys: rest });
  return groups.filter((g) => g.keys.length > 0);
}

/** The label shown: from the table, else the key with spaces (never a raw key broken mid-word). */
export function fieldLabel(key: string): Label {
  return SAMPLER_LABELS[key as Key] ?? { label: key.replaceAll("_", " "), unit: "" };
}

/** Tooltip: the config key, its description from the schema, and the default. */
export function fieldTooltip(key: string, def: unknown): string {
  const description = (SAMPLER_DESCRIPTIONS as Record<string, string>)[key];
  return [key, description, `default ${def === null ? "none" : String(def)}`].filter(Boolean).join(" · ");
}

import { describe, expect, test } from "bun:test";
import { SAMPLER_DESCRIPTIONS, type SamplerConfig } from "./generated/events";
import { fieldLabel, fieldTooltip, groupFields, SAMPLER_LABELS } from "./samplerFields";
import { samplerOverrides } from "./sampler";

const keys = Object.keys(SAMPLER_DESCRIPTIONS);

describe("sampler field labels", () => {
  test("every SamplerConfig field has a label in words, never its raw key", () => {
    for (const k of keys) {
      expect(SAMPLER_LABELS[k as keyof SamplerConfig]).toBeDefined();
      expect(fieldLabel(k).label).not.toContain("_");
    }
    expect(fieldLabel("some_new_knob")).toEqual({ label: "some new knob", unit: "" });
  });

  test("thresholds carry their units", () => {
    expect(fieldLabel("low_ent").unit).toBe("bits");
    expect(fieldLabel("high_vent").unit).toBe("bits²");
  });

  test("tooltip: key, schema description, default", () => {
    expect(fieldTooltip("low_ent", 0.1)).toBe("low_ent · Below: low entropy. · default 0.1");
    expect(fieldTooltip("helv_attn_ent_offset", 1.3)).toBe("helv_attn_ent_offset · default 1.3");
    expect(fieldTooltip("clarifying_token", null)).toContain("default none");
  });

  test("groups hold every field exactly once; unknown fields land in Other", () => {
    const groups = groupFields([...keys, "future_knob"]);
    const all = groups.flatMap((g) => g.keys);
    expect((all as string[]).sort()).toEqual([...keys, "future_knob"].sort());
    expect(groups.at(-1)).toEqual({ title: "Other", keys: ["future_knob" as keyof SamplerConfig] });
    expect(groups.find((g) => g.title.includes("fork mode"))?.keys).toContain("fork_score");
  });

  test("choice and yes/no fields become overrides of the right type", () => {
    const defaults = { fork_score: "answer_margin", fork_aggregate: false, fork_branches: 5 } as unknown as SamplerConfig;
    const o = samplerOverrides(defaults, { fork_score: "entropy", fork_aggregate: "true", fork_branches: "2.5" });
    expect(o.sampler).toEqual({ fork_score: "entropy", fork_aggregate: true });
    expect(o.errors).toEqual({ fork_branches: "must be a whole number" });
    expect(samplerOverrides(defaults, { fork_aggregate: "false" }).sampler).toBeNull();
  });

  test("a field with a null default, typed in then emptied, is its default again (not sent)", () => {
    const defaults = { fork_answer_kind: null, fork_answer_cue: null, temperature: 0.7 } as unknown as SamplerConfig;
    expect(samplerOverrides(defaults, { fork_answer_kind: "", fork_answer_cue: " " }).sampler).toBeNull();
    const set = samplerOverrides(defaults, { fork_answer_kind: "numeric", fork_answer_cue: "So the answer is" });
    expect(set.sampler).toEqual({ fork_answer_kind: "numeric", fork_answer_cue: "So the answer is" });
  });
});

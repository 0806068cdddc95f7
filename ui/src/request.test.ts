import { describe, expect, test } from "bun:test";
import { buildRequest, withTokenLimit } from "./request";
import { samplerOverrides } from "./sampler";
import type { SamplerConfig } from "./generated/events";

const values = { prompt: "Why?", system: "", maxTokens: "24", seed: "7", mode: "entropix" as const };

describe("buildRequest", () => {
  test("single mode", () => {
    const r = buildRequest(values, null);
    expect(r).toEqual({
      ok: true,
      path: "/api/generate",
      modes: ["entropix"],
      body: { prompt: "Why?", system: null, max_tokens: 24, seed: 7, sampler: null, top_logprobs: 5, mode: "entropix" },
    });
  });

  test("compare sends both modes to /api/compare without `mode`", () => {
    const r = buildRequest({ ...values, mode: "compare", seed: "" }, { temperature: 1 });
    if (!r.ok) throw new Error(r.error);
    expect(r.path).toBe("/api/compare");
    expect(r.body.modes).toEqual(["entropix", "normal"]);
    expect(r.body.mode).toBeUndefined();
    expect(r.body.seed).toBeNull();
    expect(r.body.sampler).toEqual({ temperature: 1 });
  });

  test("bad input is one clear message", () => {
    expect(buildRequest({ ...values, prompt: "  " }, null)).toMatchObject({ ok: false });
    expect(buildRequest({ ...values, maxTokens: "0" }, null)).toMatchObject({ ok: false, error: expect.stringContaining("1 to 4096") });
    expect(buildRequest({ ...values, maxTokens: "2.5" }, null)).toMatchObject({ ok: false });
    expect(buildRequest({ ...values, seed: "-1" }, null)).toMatchObject({ ok: false });
  });
});

describe("samplerOverrides", () => {
  const defaults = { temperature: 0.666, top_k: 27, low_ent: 0.1, clarifying_token: " ..." } as SamplerConfig;

  test("only changed, valid fields are sent", () => {
    expect(samplerOverrides(defaults, {})).toEqual({ sampler: null, errors: {} });
    expect(samplerOverrides(defaults, { temperature: "0.666", low_ent: " 0.5 " })).toEqual({
      sampler: { low_ent: 0.5 },
      errors: {},
    });
    expect(samplerOverrides(defaults, { clarifying_token: null }).sampler).toEqual({ clarifying_token: null });
  });

  test("invalid numbers are reported per field", () => {
    const o = samplerOverrides(defaults, { temperature: "abc", top_k: "2.5", low_ent: "" });
    expect(o.sampler).toBeNull();
    expect(o.errors).toEqual({ temperature: "not a number", top_k: "must be a whole number", low_ent: "not a number" });
  });
});

describe("the server's max tokens limit", () => {
  test("a value over it is refused naming the limit, and the form's value comes down to it", () => {
    const r = buildRequest({ ...values, maxTokens: "96" }, null, "", 64);
    expect(r).toEqual({ ok: false, error: "Max tokens must be a whole number from 1 to 64 (this server's limit)." });
    expect(buildRequest({ ...values, maxTokens: "64" }, null, "", 64).ok).toBe(true);
    expect(withTokenLimit({ ...values, maxTokens: "96" }, 64).maxTokens).toBe("64");
    const under = { ...values, maxTokens: "24" };
    expect(withTokenLimit(under, 64)).toBe(under); // unchanged: the same object (no re-render)
    expect(withTokenLimit({ ...values, maxTokens: "" }, 64).maxTokens).toBe(""); // being typed
  });
});

import { describe, expect, test } from "bun:test";
import { renderToStaticMarkup } from "react-dom/server";
import { PresetSelect } from "./PresetSelect";
import { buildRequest } from "../request";
import { presetBase, samplerOverrides } from "../sampler";
import type { SamplerConfig } from "../generated/events";

const presets = {
  precise: { summary: "near-greedy: accuracy first.", overrides: { n_adaptive_samples: 5 } },
  creative: { summary: "varied wording, some accuracy lost.", overrides: { n_adaptive_samples: 1 } },
};
const noop = () => undefined;

describe("PresetSelect", () => {
  test("offers the default and every preset, and says what the active one trades", () => {
    const html = renderToStaticMarkup(<PresetSelect presets={presets} value="creative" onChange={noop} />);
    expect(html).toContain('value=""');
    expect(html).toContain(">precise<");
    expect(html).toContain(">creative<");
    expect(html).toContain("varied wording, some accuracy lost.");
  });

  test("no presets from the server: nothing shown", () => {
    expect(renderToStaticMarkup(<PresetSelect presets={{}} value="" onChange={noop} />)).toBe("");
  });
});

describe("preset in the request", () => {
  const values = { prompt: "Why?", system: "", maxTokens: "24", seed: "7", mode: "entropix" as const };

  test("sent when chosen, absent otherwise", () => {
    const r = buildRequest(values, null, "creative");
    if (!r.ok) throw new Error(r.error);
    expect(r.body.preset).toBe("creative");
    const plain = buildRequest(values, null);
    if (!plain.ok) throw new Error(plain.error);
    expect("preset" in plain.body).toBe(false);
  });

  test("the ablation list is edited as comma-separated state names", () => {
    const defaults = { greedy_states: [] as string[] } as unknown as SamplerConfig;
    expect(samplerOverrides(defaults, { greedy_states: "exploring, adaptive" }).sampler).toEqual({
      greedy_states: ["exploring", "adaptive"],
    });
    expect(samplerOverrides(defaults, { greedy_states: " " }).sampler).toBeNull();
  });

  test("with a preset, a field set back to the server's default is sent: it wins over the preset", () => {
    const defaults = { n_adaptive_samples: 1, mist_min_temperature: 0.6 } as unknown as SamplerConfig;
    const base = presetBase(defaults, presets, "precise");
    expect(base).toEqual({ n_adaptive_samples: 5, mist_min_temperature: 0.6 } as unknown as SamplerConfig); // the panel shows 5
    expect(samplerOverrides(base, { n_adaptive_samples: "1" }).sampler).toEqual({ n_adaptive_samples: 1 });
    expect(samplerOverrides(base, { n_adaptive_samples: "5" }).sampler).toBeNull(); // the preset's own value
    expect(presetBase(defaults, presets, "")).toBe(defaults);
  });
});

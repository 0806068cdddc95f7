import { describe, expect, test } from "bun:test";
import { ACTION_INFO, STATE_INFO, STATES } from "./generated/events";
import {
  actionLabel,
  count,
  countStates,
  formatNumber,
  formatProb,
  formatRate,
  formatSeconds,
  liveRate,
  quoteToken,
  stateColour,
  stateLabel,
  stateTable,
  tokenDescription,
  withAlpha,
} from "./format";
import { token } from "./test/fixtures";

describe("state colouring and labels", () => {
  test("every state has a distinct Okabe-Ito colour and a label", () => {
    const okabeIto = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"];
    const colours = STATES.map((s) => stateColour(s));
    expect(new Set(colours).size).toBe(STATES.length);
    for (const c of colours) expect(okabeIto).toContain(c.toUpperCase());
    for (const s of STATES) expect(stateLabel(s)).toBe(STATE_INFO[s].label);
  });

  test("unknown states fall back to a neutral colour and their own name", () => {
    expect(stateColour("nope")).toBe("#999999");
    expect(stateLabel("nope")).toBe("nope");
  });

  test("server-provided state info overrides the generated copy", () => {
    const table = stateTable({ flowing: { label: "Sure", colour: "#000000", description: "d" } });
    expect(stateLabel("flowing", table)).toBe("Sure");
    expect(stateLabel("adaptive", table)).toBe(STATE_INFO.adaptive.label);
  });

  test("withAlpha appends an alpha byte", () => {
    expect(withAlpha("#0072B2", 0.25)).toBe("#0072B240");
    expect(withAlpha("#0072B2", 1)).toBe("#0072B2ff");
    expect(withAlpha("red", 0.5)).toBe("red");
  });

  test("the description names the state in words", () => {
    const d = tokenDescription(token(0, "Hi\n", "resampling"));
    expect(d).toContain("Lost in the mist");
    expect(d).toContain('"Hi\\n"');
    expect(d).toContain("entropy 0.05");
  });
});

describe("metrics formatting", () => {
  test("numbers", () => {
    expect(formatNumber(0)).toBe("0");
    expect(formatNumber(1.23456)).toBe("1.23");
    expect(formatNumber(123.456)).toBe("123");
    expect(formatNumber(0.0123456)).toBe("0.0123");
    expect(formatNumber(0.00001234)).toBe("1.23e-5");
    expect(formatNumber(123456)).toBe("1.23e+5");
    expect(formatNumber(Number.NaN)).toBe("NaN");
  });

  test("probabilities from logprobs", () => {
    expect(formatProb(0)).toBe("100%");
    expect(formatProb(Math.log(0.5))).toBe("50.0%");
    expect(formatProb(Math.log(0.0123))).toBe("1.23%");
    expect(formatProb(Math.log(1e-6))).toBe("1.0e-4%");
    expect(formatProb(-Infinity)).toBe("0%");
  });

  test("times and rates", () => {
    expect(formatSeconds(0.0421)).toBe("42 ms");
    expect(formatSeconds(2.5)).toBe("2.50 s");
    expect(formatSeconds(undefined)).toBe("–");
    expect(formatRate(12.345)).toBe("12.3 tok/s");
    expect(formatRate(0)).toBe("–");
  });

  test("counts: the singular for exactly one, the plural else (zero too)", () => {
    expect([0, 1, 2].map((n) => count(n, "token"))).toEqual(["0 tokens", "1 token", "2 tokens"]);
    expect(count(1, "branch", "branches")).toBe("1 branch");
    expect(count(3, "branch", "branches")).toBe("3 branches");
  });

  test("token text quoted for the inspector", () => {
    expect(quoteToken('say "hi"\n')).toBe('"say \\"hi\\"\\n"');
  });

  test("live counts and rate", () => {
    const toks = [token(0, "a"), token(1, "b", "exploring"), token(2, "c", "exploring")];
    expect(countStates(toks)).toEqual({ flowing: 1, treading: 0, exploring: 2, resampling: 0, adaptive: 0 });
    expect(liveRate(toks)).toBeCloseTo(2 / 0.1);
    expect(liveRate(toks.slice(0, 1))).toBeUndefined();
  });
});

describe("action wording", () => {
  test("depends on the mode: normal mode's parameters are fixed, not adjusted", () => {
    expect(actionLabel("sample", "entropix")).toBe(ACTION_INFO.sample.label);
    expect(actionLabel("sample", "normal")).not.toContain("adjusted");
    expect(actionLabel("sample", "normal")).toContain("fixed");
    expect(actionLabel("argmax", "normal")).toBe(ACTION_INFO.argmax.label);
    expect(actionLabel("unknown", "greedy")).toBe("unknown");
  });
});

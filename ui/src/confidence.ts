import type { TokenEvent } from "./generated/events";

/** The answer confidence in plain words; the same cut points as `confidence.reading`. */
export type Reading = "likely right" | "unsure" | "likely wrong";

export function confidenceReading(confidence: number): Reading {
  if (confidence >= 0.7) return "likely right";
  return confidence >= 0.35 ? "unsure" : "likely wrong";
}

/** Indices of the tokens whose text overlaps the answer span [start, end) of the done text
 * (token texts concatenate to it). Empty without a span. */
export function answerTokens(tokens: readonly TokenEvent[], span: readonly number[] | null | undefined): Set<number> {
  const out = new Set<number>();
  if (!span || span.length !== 2) return out;
  const [start, end] = span as [number, number];
  let at = 0;
  tokens.forEach((t, i) => {
    const next = at + t.text.length;
    if (next > at && at < end && next > start) out.add(i);
    at = next;
  });
  return out;
}

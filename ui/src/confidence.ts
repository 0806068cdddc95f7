import type { TokenEvent } from "./generated/events";

/** The answer confidence in plain words; the same cut points as `confidence.reading`. */
export type Reading = "likely right" | "unsure" | "likely wrong";

export function confidenceReading(confidence: number): Reading {
  if (confidence >= 0.7) return "likely right";
  return confidence >= 0.35 ? "unsure" : "likely wrong";
}

// The server's spans count characters as Python does (code points); a JS string's length and
// slice count UTF-16 units, two for an emoji or any character beyond the BMP.
const codePoints = (text: string): number => Array.from(text).length;

/** The text of the answer span [start, end) (code points) of `text`; "" without a span. */
export function spanText(text: string, span: readonly number[] | null | undefined): string {
  if (!span || span.length !== 2) return "";
  return Array.from(text).slice(span[0], span[1]).join("");
}

/** At most `max` characters (code points, so an emoji is never cut in half), ending in
 * `ellipsis` if cut (the chat's titles: "…"). */
export function clip(text: string, max: number, ellipsis = "..."): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  return chars.slice(0, max - Array.from(ellipsis).length).join("") + ellipsis;
}

/** Indices of the tokens whose text overlaps the answer span [start, end) of the done text
 * (token texts concatenate to it; offsets in code points, as the server counts). Empty without
 * a span. */
export function answerTokens(tokens: readonly TokenEvent[], span: readonly number[] | null | undefined): Set<number> {
  const out = new Set<number>();
  if (!span || span.length !== 2) return out;
  const [start, end] = span as [number, number];
  let at = 0;
  tokens.forEach((t, i) => {
    const next = at + codePoints(t.text);
    if (next > at && at < end && next > start) out.add(i);
    at = next;
  });
  return out;
}

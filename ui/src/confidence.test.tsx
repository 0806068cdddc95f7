import { describe, expect, test } from "bun:test";
import { renderToStaticMarkup } from "react-dom/server";
import { answerTokens, confidenceReading } from "./confidence";
import { ConfidenceBadge } from "./components/ConfidenceBadge";
import { done, token } from "./test/fixtures";

describe("answer confidence", () => {
  test("plain words at the cut points", () => {
    expect(confidenceReading(0.9)).toBe("likely right");
    expect(confidenceReading(0.7)).toBe("likely right");
    expect(confidenceReading(0.5)).toBe("unsure");
    expect(confidenceReading(0.1)).toBe("likely wrong");
  });

  test("the tokens overlapping the answer span", () => {
    const toks = [token(0, " Paris"), token(1, "."), token(2, ""), token(3, " It"), token(4, " is")];
    expect([...answerTokens(toks, [1, 6])]).toEqual([0]);
    expect([...answerTokens(toks, [6, 10])]).toEqual([1, 3]);
    expect(answerTokens(toks, null).size).toBe(0);
  });

  test("spans count code points, as the server does: an emoji before the answer is one", () => {
    // What the embedded model sent for a greedy "🙂" answer: the emoji's first token adds no text.
    const text = "🙂 is 5, 🙂 🙂";
    const toks = [token(0, ""), token(1, "🙂"), token(2, " is"), token(3, " 5"), token(4, ", 🙂"), token(5, " 🙂")];
    expect([...answerTokens(toks, [0, 1])]).toEqual([1]);
    expect([...answerTokens(toks, [5, 6])]).toEqual([3]);
    expect([...answerTokens(toks, [10, 11])]).toEqual([5]);
    const d = { ...done(), text, confidence: 0.5, answer_span: [5, 6] };
    expect(renderToStaticMarkup(<ConfidenceBadge done={d} />)).toContain("<mark>5</mark>");
    const first = renderToStaticMarkup(<ConfidenceBadge done={{ ...d, answer_span: [0, 1] }} />);
    expect(first).toContain("<mark>🙂</mark>");
    // A long answer is cut between characters, never inside an emoji.
    const long = renderToStaticMarkup(<ConfidenceBadge done={{ ...d, text: "🙂".repeat(80), answer_span: [0, 80] }} />);
    expect(long).toContain(`<mark>${"🙂".repeat(57)}...</mark>`);
  });

  test("badge: reading, percentage, the answer marked, abstention", () => {
    const d = { ...done(), text: " Paris. It is", confidence: 0.83, answer_span: [1, 6] };
    const html = renderToStaticMarkup(<ConfidenceBadge done={d} />);
    expect(html).toContain("likely right · 83%");
    expect(html).toContain("<mark>Paris</mark>");
    expect(html).not.toContain("abstained");
    expect(html).not.toContain("samples agree");
    const sampled = renderToStaticMarkup(<ConfidenceBadge done={{ ...d, agreement: 0.75, confidence_samples: 4 }} />);
    expect(sampled).toContain("3/4 samples agree");
    const low = renderToStaticMarkup(<ConfidenceBadge done={{ ...d, confidence: 0.2, abstained: true }} />);
    expect(low).toContain("likely wrong · 20%");
    expect(low).toContain("abstained");
    expect(renderToStaticMarkup(<ConfidenceBadge done={done()} />)).toBe("");
    // cut, not rounded: just under a minimum of 1 is not 100%; 0.29 stays 29%
    const under = renderToStaticMarkup(<ConfidenceBadge done={{ ...d, confidence: 0.998, abstained: true }} />);
    expect(under).toContain("· 99%");
    expect(renderToStaticMarkup(<ConfidenceBadge done={{ ...d, confidence: 0.29 }} />)).toContain("· 29%");
  });
});

import type { DoneEvent } from "../generated/events";
import { clip, confidenceReading, spanText } from "../confidence";

/** How likely the answer is right, in plain words, with the answer it was computed on, how
 * many hidden sampled answers agreed (a request's confidence_samples), and "abstained" when it
 * fell below the request's min_confidence (the text is still shown). */
export function ConfidenceBadge({ done }: { done?: DoneEvent }) {
  if (!done || done.confidence == null) return null;
  const reading = confidenceReading(done.confidence);
  const answer = spanText(done.text, done.answer_span).trim();
  // Cut, not rounded (as the CLI): 0.998 under a minimum of 1 must not read 100% beside
  // "abstained"; the 1e-9 keeps 0.29 (28.999... x 100) at 29.
  const pct = Math.floor(100 * done.confidence + 1e-9);
  return (
    <div className="confidence" data-testid="confidence" data-reading={reading}>
      <span className={`confidence-badge ${reading.replace(" ", "-")}`} title={`Calibrated probability that the answer is right: ${pct}%`}>
        {reading} · {pct}%
      </span>
      {answer && (
        <span className="confidence-answer">
          answer <mark>{clip(answer, 60)}</mark>
        </span>
      )}
      {done.confidence_samples > 0 && done.agreement != null && (
        <span className="confidence-samples" data-testid="agreement" title="Answers of hidden rows sampled in normal mode, compared with this one: their agreement is part of the confidence">
          {Math.round(done.agreement * done.confidence_samples)}/{done.confidence_samples} samples agree
        </span>
      )}
      {done.abstained && (
        <span className="confidence-abstained" data-testid="abstained">
          abstained: below the minimum confidence asked for
        </span>
      )}
    </div>
  );
}

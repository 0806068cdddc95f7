import type { ForkEvent } from "../generated/events";
import { count, formatNumber, formatProb, quoteToken } from "../format";
import { isKept, triggerLabel } from "../forks";
import { AnswerGroups } from "./AnswerGroups";
import { forkDomId } from "./ForkMarker";
import { TokenText } from "./Token";

interface Props {
  fork: ForkEvent;
  onClose: () => void;
}

/** The branches of one fork side by side: first token, text, score, answer; the kept one marked. */
export function ForkView({ fork, onClose }: Props) {
  const best = Math.max(...fork.branches.map((b) => b.score));
  return (
    <section
      id={forkDomId(fork.mode, fork.index)}
      className="fork-view"
      aria-label={`Fork before token #${fork.index}`}
      data-testid="fork-view"
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.stopPropagation();
          onClose();
        }
      }}
    >
      <div className="fork-head">
        <h3>Fork before token #{fork.index}</h3>
        <button type="button" className="fork-close" onClick={onClose} aria-label="Close the fork">
          ×
        </button>
      </div>
      <p className="muted small" data-testid="fork-meta">
        Opened at {triggerLabel(fork.trigger)} (entropy {formatNumber(fork.metrics.entropy)} bits, varentropy{" "}
        {formatNumber(fork.metrics.varentropy)} bits²). {count(fork.branches.length, "branch", "branches")} scored by{" "}
        <code>{fork.score}</code>; {count(fork.tokens_computed, "token")} computed.
      </p>
      <AnswerGroups fork={fork} />
      <ol className="branches" data-testid="fork-branches">
        {fork.branches.map((b, i) => {
          const kept = isKept(fork, i);
          return (
            <li key={i} className={kept ? "branch kept" : "branch"} data-kept={kept} data-testid="fork-branch">
              <div className="branch-head">
                <code className="branch-token">{quoteToken(b.token.text)}</code>
                <span className="muted small">{formatProb(b.token.logprob)}</span>
                {kept && <strong className="kept-badge">kept</strong>}
              </div>
              <p className="branch-text">
                <TokenText text={b.text} />
              </p>
              <dl className="kv branch-kv">
                <dt>score</dt>
                <dd data-testid="branch-score">
                  {formatNumber(b.score)}
                  {b.score === best && fork.branches.length > 1 && <span className="muted small"> (best)</span>}
                </dd>
                <dt>answer</dt>
                <dd data-testid="branch-answer">{b.answer ?? <span className="muted">none</span>}</dd>
                <dt>tokens</dt>
                <dd>{b.tokens}</dd>
              </dl>
            </li>
          );
        })}
      </ol>
    </section>
  );
}

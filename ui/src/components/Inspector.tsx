import type { ForkEvent, Metrics, TokenEvent } from "../generated/events";
import { keptBranch } from "../forks";
import {
  actionLabel,
  formatNumber,
  formatProb,
  METRIC_LABELS,
  quoteToken,
  stateColour,
  stateLabel,
  type StateTable,
} from "../format";

/** Everything known about one token: metrics, state, action, parameters, alternatives. */
export function Inspector({
  ev,
  table,
  pinned,
  fork,
}: {
  ev: TokenEvent | null;
  table: StateTable;
  pinned: boolean;
  fork?: ForkEvent; // the fork that chose this token, if any
}) {
  if (!ev) {
    return (
      <section className="inspector panel" aria-label="Token details">
        <h2>Token details</h2>
        <p className="muted">
          Hover, tap or focus a token (Tab to the output, then arrow keys) to see its metrics,
          the sampler's decision and the alternatives it had.
        </p>
      </section>
    );
  }
  const colour = stateColour(ev.state, table);
  const maxTop = ev.top.length ? Math.max(...ev.top.map((t) => Math.exp(t.logprob))) : 1;
  return (
    <section className="inspector panel" aria-label="Token details" aria-live="polite" data-testid="inspector">
      <h2>
        Token #{ev.index} <span className="muted small">({ev.mode}{pinned ? ", pinned" : ""})</span>
      </h2>
      <p className="insp-token">
        <code>{quoteToken(ev.text)}</code> <span className="muted small">id {ev.id}</span>
      </p>
      {/* A character of several bytes (an emoji, most CJK) can take two tokens: the first adds no
          text until the second completes it; alone, either decodes as "\ufffd". */}
      {ev.text === "" && (
        <p className="muted small" data-testid="insp-partial">
          No text of its own: the first bytes of a character the next token completes.
        </p>
      )}
      <p className="insp-state">
        <span className="swatch" style={{ backgroundColor: colour }} aria-hidden="true" />
        <strong data-testid="insp-state">{stateLabel(ev.state, table)}</strong>{" "}
        <span className="muted small">({ev.state})</span>
      </p>
      <p className="muted small">{table[ev.state]?.description}</p>
      {(ev.mode === "normal" || ev.mode === "greedy") && (
        <p className="muted small" data-testid="insp-state-note">
          Measured only: {ev.mode} mode does not act on the state.
        </p>
      )}
      <dl className="kv">
        <dt>Action</dt>
        <dd data-testid="insp-action">{actionLabel(ev.action, ev.mode)}</dd>
        {fork && (
          <>
            <dt>Fork</dt>
            <dd data-testid="insp-fork">
              kept branch {fork.kept + 1} of {fork.branches.length}
              {keptBranch(fork) ? ` (score ${formatNumber(keptBranch(fork)!.score)})` : ""}; open the marker before
              this token to compare them
            </dd>
          </>
        )}
        <dt>Probability</dt>
        <dd>{formatProb(ev.logprob)} <span className="muted small">(T=1)</span></dd>
      </dl>
      <h3>Metrics</h3>
      <table className="metrics" data-testid="insp-metrics">
        <tbody>
          {(Object.keys(METRIC_LABELS) as (keyof Metrics)[]).map((k) => (
            <tr key={k}>
              <th scope="row" title={k}>{METRIC_LABELS[k].label}</th>
              <td className="num">{formatNumber(ev.metrics[k])}</td>
              <td className="unit muted small">{METRIC_LABELS[k].unit}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Parameters used</h3>
      {ev.mode === "normal" && <p className="muted small">Fixed for the whole generation (normal mode).</p>}
      <dl className="kv params">
        <dt>temperature</dt>
        <dd>{formatNumber(ev.params.temperature)}</dd>
        <dt>top_p</dt>
        <dd>{formatNumber(ev.params.top_p)}</dd>
        <dt>top_k</dt>
        <dd>{ev.params.top_k}</dd>
        <dt>min_p</dt>
        <dd>{formatNumber(ev.params.min_p)}</dd>
        <dt>samples</dt>
        <dd>{ev.params.n_samples}</dd>
      </dl>
      <h3>Top alternatives</h3>
      {ev.top.some((t) => t.text.includes("\ufffd")) && (
        <p className="muted small" data-testid="insp-top-partial">
          Each alternative is one token decoded alone: � stands for part of a character.
        </p>
      )}
      {ev.top.length === 0 ? (
        <p className="muted small">None reported.</p>
      ) : (
        <table className="alts" data-testid="insp-top">
          <tbody>
            {ev.top.map((t) => {
              const p = Math.exp(t.logprob);
              return (
                <tr key={t.id} className={t.id === ev.id ? "chosen" : undefined}>
                  <td className="alt-text">
                    <code>{quoteToken(t.text)}</code>
                    {t.id === ev.id && <span className="sr-only"> (chosen)</span>}
                  </td>
                  <td className="alt-bar" aria-hidden="true">
                    <span style={{ width: `${(100 * p) / maxTop}%`, backgroundColor: colour }} />
                  </td>
                  <td className="num">{formatProb(t.logprob)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

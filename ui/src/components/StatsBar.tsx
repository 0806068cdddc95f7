import { STATES } from "../generated/events";
import { count, countStates, formatRate, formatSeconds, liveRate, type StateTable } from "../format";
import { forkWork } from "../forks";
import type { Run } from "../store";

/** Speed and per-state counts of one run: live while streaming, final from the done event. */
export function StatsBar({ run, table }: { run: Run; table: StateTable }) {
  const live = countStates(run.tokens);
  const counts = run.done ? { ...live, ...run.done.state_counts } : live;
  const n = run.done?.generated_tokens ?? run.tokens.length;
  // No token, no time to the first one (the done event says 0.0 then).
  const ttft = n === 0 ? undefined : (run.done?.ttft_s ?? run.tokens[0]?.elapsed_s);
  const rate = run.done?.decode_tok_s ?? liveRate(run.tokens);
  const work = forkWork(run.done);
  const forks = run.done?.forks ?? run.forks?.length ?? 0;
  return (
    <div className="stats" role="group" aria-label={`${run.mode} statistics`} data-mode={run.mode}>
      <span className="stat">
        <span className="stat-k">tokens</span> <span className="stat-v" data-testid="stat-tokens">{n}</span>
      </span>
      <span className="stat">
        <span className="stat-k">TTFT</span> <span className="stat-v" data-testid="stat-ttft">{formatSeconds(ttft)}</span>
      </span>
      <span className="stat">
        <span className="stat-k">speed</span> <span className="stat-v">{formatRate(rate)}</span>
      </span>
      {run.done && (
        <span className="stat">
          <span className="stat-k">end</span>{" "}
          <span className="stat-v" data-testid="stat-finish">{run.done.finish_reason}</span>
        </span>
      )}
      {forks > 0 && (
        <span className="stat">
          <span className="stat-k">forks</span> <span className="stat-v" data-testid="stat-forks">{forks}</span>
        </span>
      )}
      {work && (
        <span className="stat" title="Tokens the model decoded, fork branches included, against the tokens shown">
          <span className="stat-k">computed</span>{" "}
          <span className="stat-v" data-testid="stat-computed">
            {work.computed} / {work.emitted} ({work.ratio.toFixed(1)}×)
          </span>
        </span>
      )}
      {run.done?.seed != null && (
        <span className="stat">
          <span className="stat-k">seed</span> <span className="stat-v">{run.done.seed}</span>
        </span>
      )}
      <span className="stat-states">
        {STATES.map((s) => (
          <span key={s} className="state-count" title={`${table[s].label}: ${count(counts[s] ?? 0, "token")}`}>
            <span className="swatch" style={{ backgroundColor: table[s].colour }} aria-hidden="true" />
            <span className="sr-only">{table[s].label}: </span>
            {counts[s] ?? 0}
          </span>
        ))}
      </span>
    </div>
  );
}

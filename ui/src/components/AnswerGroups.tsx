import type { ForkEvent } from "../generated/events";
import { count, formatNumber } from "../format";

/** The answers a fork's branches reached: summed score (CoT-decoding's aggregation), how many
 * branches, and which answer won, by how much over the next. */
export function AnswerGroups({ fork }: { fork: ForkEvent }) {
  const groups = fork.groups ?? [];
  if (groups.length === 0) return null;
  const total = groups.reduce((s, g) => s + Math.max(g.score, 0), 0) || 1;
  const won = groups.find((g) => g.won);
  const next = groups.find((g) => !g.won);
  return (
    <div className="answer-groups" data-testid="answer-groups">
      <p className="muted small">
        Answers reached{fork.answer_kind ? ` (read as ${fork.answer_kind})` : ""}:{" "}
        {fork.aggregate ? "the highest summed score wins" : "the best single branch wins"}
        {won && next ? `; "${won.answer}" leads "${next.answer}" by ${formatNumber(won.score - next.score)}` : ""}.
      </p>
      <ol className="groups">
        {groups.map((g) => (
          <li key={g.answer} className={g.won ? "group won" : "group"} data-won={g.won} data-testid="answer-group">
            <span className="group-bar" style={{ width: `${(100 * Math.max(g.score, 0)) / total}%` }} aria-hidden />
            <code className="group-answer">{g.answer}</code>{" "}
            <span className="small">
              {formatNumber(g.score)} · {count(g.branches, "branch", "branches")}
            </span>
            {g.won && <strong className="kept-badge">won</strong>}
          </li>
        ))}
      </ol>
    </div>
  );
}

// One turn of the thread: a user message (the last one editable), or an answer with its runs
// shown as in the single-prompt view (coloured tokens, stats, forks, charts on demand).
import { memo, useCallback, useState } from "react";
import type { ForkEvent, Mode, SamplerConfig } from "../../generated/events";
import type { StateTable } from "../../format";
import type { AssistantTurn, UserTurn } from "../../chat/conversation";
import { StatsBar } from "../StatsBar";
import { ConfidenceBadge } from "../ConfidenceBadge";
import { TokenStream } from "../TokenStream";
import { ForkView } from "../ForkView";
import { Charts, type Selection } from "../Charts";

/** A token in the thread: which turn, which run, which position. */
export interface TurnSelection extends Selection {
  turn: string;
}

interface UserProps {
  turn: UserTurn;
  editable: boolean;
  onResend: (text: string) => boolean;
}

export function UserTurnView({ turn, editable, onResend }: UserProps) {
  const [draft, setDraft] = useState<string | null>(null);
  if (draft !== null && editable) {
    return (
      <li className="turn user editing" data-testid="turn-user" data-turn-id={turn.id}>
        <label className="sr-only" htmlFor={`edit-${turn.id}`}>
          Edit your message
        </label>
        <textarea id={`edit-${turn.id}`} data-testid="edit-input" rows={3} value={draft} onChange={(e) => setDraft(e.target.value)} />
        <div className="turn-actions">
          <button type="button" className="primary" data-testid="edit-resend" onClick={() => onResend(draft) && setDraft(null)}>
            Resend
          </button>
          <button type="button" onClick={() => setDraft(null)}>
            Cancel
          </button>
        </div>
      </li>
    );
  }
  return (
    <li className="turn user" data-testid="turn-user" data-turn-id={turn.id}>
      <div className="bubble" data-testid="user-text">
        {turn.content}
      </div>
      {editable && (
        <div className="turn-actions">
          <button type="button" className="link" data-testid="edit" onClick={() => setDraft(turn.content)}>
            Edit and resend
          </button>
        </div>
      )}
    </li>
  );
}

const STATUS_LABEL: Partial<Record<AssistantTurn["status"], string>> = {
  stopped: "stopped",
  interrupted: "interrupted",
  error: "failed",
};

interface AssistantProps {
  turn: AssistantTurn;
  last: boolean; // only the last answer can be regenerated or have its pick changed
  busy: boolean; // some answer is streaming
  table: StateTable;
  thresholds: Pick<SamplerConfig, "low_ent" | "low_vent" | "med_ent" | "high_ent" | "high_vent"> | null;
  pinned: TurnSelection | null; // this turn's pinned token, if any
  openFork: TurnSelection | null; // this turn's open fork, if any
  onInspect: (sel: TurnSelection, pin: boolean) => void;
  onLeave: () => void;
  onUnpin?: () => void;
  onToggleFork: (sel: TurnSelection) => void;
  onRegenerate: () => void;
  onChoose: (turnId: string, mode: Mode) => void;
}

// Memoised, with stable callbacks from the thread: a streaming answer re-renders only itself.
export const AssistantTurnView = memo(function AssistantTurnView(p: AssistantProps) {
  const { turn, last, busy, table, pinned, openFork, onInspect: inspectTurn, onToggleFork: toggle } = p;
  const [charts, setCharts] = useState(false);
  const running = turn.status === "running";
  const compare = turn.runs.length > 1;
  const onInspect = useCallback((mode: Mode, index: number, pin: boolean) => inspectTurn({ turn: turn.id, mode, index }, pin), [inspectTurn, turn.id]);
  const onToggleFork = useCallback((f: ForkEvent) => toggle({ turn: turn.id, mode: f.mode, index: f.index }), [toggle, turn.id]);
  const label = STATUS_LABEL[turn.status];
  return (
    <li className="turn assistant" data-testid="turn-assistant" data-turn-id={turn.id} data-status={turn.status}>
      {label && (
        <p className={`turn-status ${turn.status}`} data-testid="turn-status">
          <strong>{label}</strong>
          {turn.error ? `: ${turn.error}` : ""}
          {turn.status === "interrupted" && turn.runs.some((r) => r.tokens.length) ? " (the partial answer is kept)" : ""}
        </p>
      )}
      <div className={`outputs n${Math.max(1, turn.runs.length)}`}>
        {turn.runs.map((r) => {
          const chosen = turn.chosen === r.mode;
          return (
            <div className={`output panel${compare && chosen ? " chosen" : ""}`} key={r.mode} data-testid={`output-${r.mode}`} data-chosen={chosen}>
              <div className="output-head">
                <h2 className="output-title">{r.mode}</h2>
                {compare && chosen && <span className="badge" data-testid="continues">continues the conversation</span>}
                {compare && !chosen && last && !running && (
                  <button type="button" className="link" data-testid={`choose-${r.mode}`} onClick={() => p.onChoose(turn.id, r.mode)}>
                    Continue with this answer
                  </button>
                )}
              </div>
              {r.error && <p className="run-error">{r.error}</p>}
              <StatsBar run={r} table={table} />
              <ConfidenceBadge done={r.done} />
              <TokenStream
                run={r}
                table={table}
                idPrefix={`${turn.id}-`}
                selected={pinned?.mode === r.mode ? pinned.index : null}
                running={running}
                onInspect={onInspect}
                onLeave={p.onLeave}
                onUnpin={p.onUnpin}
                openFork={openFork?.mode === r.mode ? openFork.index : null}
                onToggleFork={onToggleFork}
              />
              {openFork?.mode === r.mode &&
                (() => {
                  const f = r.forks?.find((x) => x.index === openFork.index);
                  return f ? <ForkView fork={f} onClose={() => toggle(openFork)} /> : null;
                })()}
            </div>
          );
        })}
      </div>
      <div className="turn-actions">
        <button type="button" className="link" aria-expanded={charts} onClick={() => setCharts((x) => !x)}>
          {charts ? "Hide charts" : "Show charts"}
        </button>
        {last && !busy && (
          <button type="button" className="link" data-testid="regenerate" onClick={p.onRegenerate}>
            Regenerate
          </button>
        )}
      </div>
      {charts && (
        <Charts
          runs={turn.runs}
          table={table}
          thresholds={p.thresholds}
          selected={pinned}
          onSelect={(sel) => inspectTurn({ ...sel, turn: turn.id }, true)}
        />
      )}
    </li>
  );
});

// The chat's left column: saved conversations (new, open, delete, export, import) and the
// settings of the next turn (system prompt, max tokens, seed, mode).
import { useRef } from "react";
import type { Conversation } from "../../chat/conversation";
import type { Summary } from "../../chat/persist";
import type { ChatValues } from "../../chat/request";
import type { UiMode } from "../PromptForm";

interface Props {
  conv: Conversation | null;
  list: Summary[];
  running: boolean;
  values: ChatValues;
  onValues: (patch: Partial<ChatValues>) => void;
  onSystem: (text: string) => void;
  onNew: () => void;
  onOpen: (id: string) => void;
  onDelete: (id: string) => void;
  onExport: () => void;
  onImport: (text: string) => void;
  tokenLimit?: number; // the server's max_tokens limit
}

const MODES: { value: UiMode; hint: string }[] = [
  { value: "entropix", hint: "sampling steered by the model's uncertainty" },
  { value: "normal", hint: "fixed temperature / top-p / top-k / min-p" },
  { value: "compare", hint: "entropix and normal answer each turn; you pick which one continues" },
  { value: "greedy", hint: "always the most likely token" },
  { value: "fork", hint: "at a fork, try the top candidates as branches and keep the most confident" },
];

export function ChatSidebar(p: Props) {
  const file = useRef<HTMLInputElement>(null);
  const when = (ms: number) => new Date(ms).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  return (
    <>
      <section className="panel chat-list" aria-label="Conversations">
        <div className="chat-list-head">
          <h2>Conversations</h2>
          <button type="button" className="primary small-btn" data-testid="new-conversation" onClick={p.onNew} disabled={p.running}>
            New
          </button>
        </div>
        {p.list.length === 0 ? (
          <p className="muted small">None saved yet. A conversation is saved in this browser as soon as it has a message.</p>
        ) : (
          <ul className="conv-list" data-testid="conversation-list">
            {p.list.map((s) => (
              <li key={s.id} className={s.id === p.conv?.id ? "current" : undefined}>
                <button type="button" className="conv-open" disabled={p.running} onClick={() => p.onOpen(s.id)} aria-current={s.id === p.conv?.id}>
                  <span className="conv-title">{s.title}</span>
                  <span className="muted small">
                    {Math.ceil(s.turns / 2)} {s.turns > 2 ? "turns" : "turn"} · {when(s.updated)}
                  </span>
                </button>
                <button
                  type="button"
                  className="conv-delete"
                  aria-label={`Delete “${s.title}”`}
                  title="Delete"
                  disabled={p.running && s.id === p.conv?.id}
                  onClick={() => window.confirm(`Delete “${s.title}”?`) && p.onDelete(s.id)}
                >
                  ×
                </button>
              </li>
            ))}
          </ul>
        )}
        <div className="actions">
          <button type="button" data-testid="export" onClick={p.onExport} disabled={!p.conv?.turns.length}>
            Export JSON
          </button>
          <button type="button" data-testid="import" onClick={() => file.current?.click()} disabled={p.running}>
            Import…
          </button>
          <input
            ref={file}
            type="file"
            accept="application/json,.json"
            hidden
            data-testid="import-file"
            onChange={async (e) => {
              const f = e.target.files?.[0];
              e.target.value = ""; // choosing the same file again fires again
              if (f) p.onImport(await f.text());
            }}
          />
        </div>
      </section>

      <section className="panel prompt-form" aria-label="Chat settings">
        <label htmlFor="chat-system">System prompt</label>
        <textarea
          id="chat-system"
          rows={3}
          value={p.conv?.system ?? ""}
          placeholder="Optional; sent with every turn"
          onChange={(e) => p.onSystem(e.target.value)}
        />
        <div className="row">
          <div className="field">
            <label htmlFor="chat-max-tokens">Max tokens</label>
            <input id="chat-max-tokens" type="number" min={1} max={p.tokenLimit ?? 4096} step={1} value={p.values.maxTokens} onChange={(e) => p.onValues({ maxTokens: e.target.value })} />
          </div>
          <div className="field">
            <label htmlFor="chat-seed">Seed</label>
            <input id="chat-seed" type="number" min={0} step={1} placeholder="random" value={p.values.seed} onChange={(e) => p.onValues({ seed: e.target.value })} />
          </div>
        </div>
        <fieldset className="modes">
          <legend>Mode</legend>
          {MODES.map((m) => (
            <label key={m.value} className="mode-option" title={m.hint}>
              <input type="radio" name="chat-mode" value={m.value} checked={p.values.mode === m.value} onChange={() => p.onValues({ mode: m.value })} />
              <span>{m.value}</span>
            </label>
          ))}
          <p className="muted small">{MODES.find((m) => m.value === p.values.mode)?.hint}</p>
        </fieldset>
      </section>
    </>
  );
}

// Conversation mode: the thread of turns, a box for the next message, the token inspector.
import { useCallback, useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { Mode, SamplerConfig } from "../../generated/events";
import { countStates, type StateTable } from "../../format";
import type { Edits, Overrides } from "../../sampler";
import { lastTurn, turnStatusText, type AssistantTurn, type UserTurn } from "../../chat/conversation";
import { liveStatus } from "../../store";
import { exportFileName, exportJSON } from "../../chat/transfer";
import type { ChatValues } from "../../chat/request";
import { MAX_TOKENS, withTokenLimit } from "../../request";
import { useChat } from "../../chat/useChat";
import { loadSettings, saveSettings } from "../../chat/persist";
import { SamplerPanel } from "../SamplerPanel";
import type { UiMode } from "../PromptForm";
import { Legend } from "../Legend";
import { Inspector } from "../Inspector";
import { ChatSidebar } from "./ChatSidebar";
import { AssistantTurnView, UserTurnView, type TurnSelection } from "./ChatTurn";

interface Props {
  table: StateTable;
  defaults: SamplerConfig | null;
  edits: Edits;
  overrides: Overrides;
  thresholds: Pick<SamplerConfig, "low_ent" | "low_vent" | "med_ent" | "high_ent" | "high_vent"> | null;
  onEdit: (key: keyof SamplerConfig, value: string | null) => void;
  onReset: () => void;
  onBusy?: (running: boolean) => void; // an answer is streaming (the page keeps the view)
  tokenLimit?: number; // the server's max_tokens limit (/api/info)
}

const UI_MODES: UiMode[] = ["entropix", "normal", "compare", "greedy", "fork"];
const same = (a: TurnSelection | null, b: TurnSelection) => !!a && a.turn === b.turn && a.mode === b.mode && a.index === b.index;

function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function ChatView({ table, defaults, edits, overrides, thresholds, onEdit, onReset, onBusy, tokenLimit = MAX_TOKENS }: Props) {
  const [values, setValues] = useState<ChatValues>(() => {
    const fallback: ChatValues = { maxTokens: "96", seed: "", mode: "entropix" };
    const saved = loadSettings(fallback);
    return UI_MODES.includes(saved.mode) ? saved : { ...saved, mode: fallback.mode };
  });
  const [input, setInput] = useState("");
  const [pinned, setPinned] = useState<TurnSelection | null>(null);
  const [hovered, setHovered] = useState<TurnSelection | null>(null);
  const [openFork, setOpenFork] = useState<TurnSelection | null>(null);
  const chat = useChat(values, overrides.sampler, Object.keys(overrides.errors).length > 0, tokenLimit);
  const { conv, running } = chat;
  const endRef = useRef<HTMLDivElement>(null);

  const onInspect = useCallback((sel: TurnSelection, pin: boolean) => {
    if (pin) {
      setPinned(sel);
      setHovered(null);
    } else setHovered(sel);
  }, []);
  const onLeave = useCallback(() => setHovered(null), []);
  const onUnpin = useCallback(() => {
    setPinned(null);
    setHovered(null);
  }, []);
  const onToggleFork = useCallback((sel: TurnSelection) => setOpenFork((cur) => (same(cur, sel) ? null : sel)), []);
  // Stable callbacks (the turns are memoised) that call the chat's latest functions.
  const chatRef = useRef(chat);
  chatRef.current = chat;
  const onRegenerate = useCallback(() => chatRef.current.regenerate(), []);
  const onChoose = useCallback((turnId: string, mode: Mode) => chatRef.current.choose(turnId, mode), []);
  const clearSelection = () => {
    setPinned(null);
    setHovered(null);
    setOpenFork(null);
  };

  useEffect(() => saveSettings(values), [values]);
  useEffect(() => setValues((v) => withTokenLimit(v, tokenLimit)), [tokenLimit]);
  useEffect(() => onBusy?.(running), [onBusy, running]);
  // A new turn or another conversation: the old selection points at nothing.
  const turnCount = conv?.turns.length ?? 0;
  useEffect(clearSelection, [conv?.id]);
  useEffect(() => {
    endRef.current?.scrollIntoView?.({ block: "nearest" }); // (newer browsers return a promise)
  }, [turnCount]);

  const submit = () => {
    if (running) return;
    if (chat.send(input)) setInput("");
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends, Shift+Enter is a new line (as in chat apps); Ctrl+Enter too.
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  };

  const turns = conv?.turns ?? [];
  const last = conv ? lastTurn(conv) : undefined;
  const lastAnswer = [...turns].reverse().find((t): t is AssistantTurn => t.role === "assistant");
  const lastUser = [...turns].reverse().find((t): t is UserTurn => t.role === "user");
  const shown = hovered ?? pinned;
  const shownTurn = shown ? turns.find((t): t is AssistantTurn => t.id === shown.turn && t.role === "assistant") : undefined;
  const shownRun = shownTurn?.runs.find((r) => r.mode === shown?.mode);
  const allTokens = turns.flatMap((t) => (t.role === "assistant" ? t.runs.flatMap((r) => r.tokens) : []));

  return (
    <main className="layout chat" data-testid="chat">
      <aside className="sidebar">
        <ChatSidebar
          conv={conv}
          list={chat.list}
          running={running}
          values={values}
          onValues={(patch) => setValues((v) => ({ ...v, ...patch }))}
          onSystem={chat.setSystem}
          onNew={() => {
            chat.newConversation();
            setInput("");
          }}
          onOpen={chat.open}
          onDelete={chat.remove}
          onExport={() => conv && download(exportFileName(conv), exportJSON(conv))}
          onImport={chat.importText}
          tokenLimit={tokenLimit}
        />
        <SamplerPanel defaults={defaults} edits={edits} overrides={overrides} onEdit={onEdit} onReset={onReset} />
      </aside>

      <section className="center" aria-label="Conversation">
        <div className="status-row">
          <p className="status" data-testid="chat-status" data-status={lastAnswer?.status ?? "idle"}>
            {conv ? turnStatusText(lastAnswer) : "Loading saved conversations…"}
          </p>
          <p className="sr-only" role="status" aria-live="polite">
            {conv ? liveStatus(turnStatusText(lastAnswer), running) : "Loading saved conversations…"}
          </p>
          <Legend table={table} counts={allTokens.length ? countStates(allTokens) : undefined} />
        </div>
        {chat.notice && (
          <div className="alert" role="alert" data-testid="chat-alert">
            <p>{chat.notice}</p>
          </div>
        )}
        <ol className="thread" data-testid="thread" aria-label={conv?.title ?? "Conversation"}>
          {turns.length === 0 && (
            <li className="output panel empty">
              <p className="muted">
                Type a message below. Every answer is coloured token by token by how unsure the model was;
                the whole conversation is sent with each turn and kept in this browser.
              </p>
            </li>
          )}
          {turns.map((t) =>
            t.role === "user" ? (
              <UserTurnView key={t.id} turn={t} editable={!running && t === lastUser} onResend={chat.editLast} />
            ) : (
              <AssistantTurnView
                key={t.id}
                turn={t}
                last={t === last}
                busy={running}
                table={table}
                thresholds={thresholds}
                pinned={pinned?.turn === t.id ? pinned : null}
                openFork={openFork?.turn === t.id ? openFork : null}
                onInspect={onInspect}
                onLeave={onLeave}
                onUnpin={onUnpin}
                onToggleFork={onToggleFork}
                onRegenerate={onRegenerate}
                onChoose={onChoose}
              />
            ),
          )}
        </ol>
        <div ref={endRef} />
        <form
          className="composer panel"
          aria-label="Your message"
          onSubmit={(e) => {
            e.preventDefault();
            submit();
          }}
        >
          <label htmlFor="chat-input" className="sr-only">
            Your message
          </label>
          <textarea
            id="chat-input"
            rows={3}
            value={input}
            placeholder="Message the model… (Enter sends, Shift+Enter for a new line)"
            onChange={(e) => setInput(e.target.value)}
            onKeyDown={onKey}
          />
          <div className="actions">
            <button type="submit" className="primary" data-testid="send" disabled={running || !conv}>
              {values.mode === "compare" ? "Send (compare)" : "Send"}
            </button>
            <button type="button" className="danger" data-testid="chat-stop" onClick={chat.stop} disabled={!running}>
              Stop
            </button>
          </div>
        </form>
      </section>

      <aside className="right">
        <Inspector
          ev={shown ? (shownRun?.tokens[shown.index] ?? null) : null}
          table={table}
          pinned={!hovered && !!pinned}
          fork={shown ? shownRun?.forks?.find((f) => f.index === shown.index) : undefined}
        />
      </aside>
    </main>
  );
}

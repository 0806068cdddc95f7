import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { ApiError, getConfig, getJSON, getPrompts, isAbort, streamGeneration, type ApiConfig, type Prompt } from "./api";
import type { ForkEvent, Mode, SamplerConfig, StreamEvent } from "./generated/events";
import { countStates, stateTable } from "./format";
import { effectiveConfig, presetBase, samplerOverrides, type Edits } from "./sampler";
import { buildRequest, MAX_TOKENS, withTokenLimit } from "./request";
import { retryUntilLoaded } from "./retry";
import { initialSession, liveStatus, reducer, statusText } from "./store";
import { PromptForm, type FormValues } from "./components/PromptForm";
import { SamplerPanel } from "./components/SamplerPanel";
import { Legend } from "./components/Legend";
import { TokenStream } from "./components/TokenStream";
import { Inspector } from "./components/Inspector";
import { StatsBar } from "./components/StatsBar";
import { ConfidenceBadge } from "./components/ConfidenceBadge";
import { Charts, type Selection } from "./components/Charts";
import { ForkView } from "./components/ForkView";
import { ChatView } from "./components/chat/ChatView";
import { useView, ViewSwitch } from "./components/chat/ViewSwitch";

interface Info {
  model?: { name?: string; stored_as?: string };
  runtime?: { device?: string; backend?: string };
  limits?: { max_tokens?: number };
}

const FLUSH_MS = 30; // batch streamed events into one render per frame-ish

export function App() {
  const [values, setValues] = useState<FormValues>({
    prompt: "",
    system: "",
    maxTokens: "96",
    seed: "",
    mode: "entropix",
  });
  const [config, setConfig] = useState<ApiConfig | null>(null);
  const [prompts, setPrompts] = useState<Prompt[]>([]);
  const [info, setInfo] = useState<Info | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [edits, setEdits] = useState<Edits>({});
  const [preset, setPreset] = useState("");
  const [session, dispatch] = useReducer(reducer, initialSession);
  const [pinned, setPinned] = useState<Selection | null>(null);
  const [hovered, setHovered] = useState<Selection | null>(null);
  const [openFork, setOpenFork] = useState<Selection | null>(null);
  const abortRef = useRef<AbortController | null>(null);
  const [view, setView] = useView();
  const [chatBusy, setChatBusy] = useState(false); // leaving mid-answer would cut it off

  // The server may start after the page (the load error says how): keep trying; once it
  // answers, the error goes and the prompts, settings and model name fill in.
  useEffect(() => {
    let cancelled = false;
    const stop = retryUntilLoaded(
      getConfig,
      (c) => {
        setConfig(c);
        setLoadError(null);
        getPrompts().then((p) => !cancelled && setPrompts(p), () => undefined);
        getJSON<Info>("/api/info").then((i) => !cancelled && setInfo(i), () => undefined);
      },
      (err) => setLoadError(err instanceof Error ? err.message : String(err)),
    );
    return () => {
      cancelled = true;
      stop();
    };
  }, []);

  // A server's --max-tokens below the form's value: the form follows it (else every request
  // with the default was a 400 there).
  const tokenLimit = info?.limits?.max_tokens ?? MAX_TOKENS;
  useEffect(() => setValues((v) => withTokenLimit(v, tokenLimit)), [tokenLimit]);

  const table = useMemo(() => stateTable(config?.states), [config]);
  // The sampler panel starts from the preset's values: it shows them, and sends what differs.
  // (The chat sends no preset: its panel starts from the server's defaults.)
  const serverDefaults = config?.defaults ?? null;
  const defaults = useMemo(() => presetBase(serverDefaults, config?.presets, preset), [serverDefaults, config, preset]);
  const overrides = useMemo(() => samplerOverrides(defaults, edits), [defaults, edits]);
  const chatOverrides = useMemo(() => samplerOverrides(serverDefaults, edits), [serverDefaults, edits]);
  const effective = effectiveConfig(defaults, overrides.sampler);
  const running = session.status === "running";

  const run = useCallback(async () => {
    setPinned(null);
    setHovered(null);
    setOpenFork(null);
    if (Object.keys(overrides.errors).length) {
      dispatch({ type: "rejected", message: "Fix the highlighted sampler settings first." });
      return;
    }
    const built = buildRequest(values, overrides.sampler, preset, tokenLimit);
    if (!built.ok) {
      dispatch({ type: "rejected", message: built.error });
      return;
    }
    const ctrl = new AbortController();
    abortRef.current = ctrl;
    dispatch({ type: "start", modes: built.modes });
    const queue: StreamEvent[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      if (queue.length) dispatch({ type: "events", events: queue.splice(0) });
    };
    try {
      await streamGeneration(
        built.path,
        built.body,
        (ev) => {
          queue.push(ev);
          timer ??= setTimeout(flush, FLUSH_MS);
        },
        ctrl.signal,
      );
      clearTimeout(timer);
      flush();
      dispatch({ type: "finished" });
    } catch (err) {
      clearTimeout(timer);
      flush();
      if (isAbort(err)) dispatch({ type: "stopped" });
      else dispatch({ type: "failed", message: err instanceof ApiError || err instanceof Error ? err.message : String(err) });
    } finally {
      if (abortRef.current === ctrl) abortRef.current = null;
    }
  }, [values, overrides, preset, tokenLimit]);

  const stop = useCallback(() => abortRef.current?.abort(), []);

  const onInspect = useCallback((mode: Mode, index: number, pin: boolean) => {
    if (pin) {
      setPinned({ mode, index });
      setHovered(null);
    } else setHovered({ mode, index });
  }, []);
  const onLeave = useCallback(() => setHovered(null), []);
  const onUnpin = useCallback(() => {
    setPinned(null);
    setHovered(null);
  }, []);
  const onToggleFork = useCallback((f: ForkEvent) => {
    setOpenFork((cur) => (cur && cur.mode === f.mode && cur.index === f.index ? null : { mode: f.mode, index: f.index }));
  }, []);
  const closeFork = useCallback(() => {
    if (openFork) {
      const sel = `[data-testid="output-${openFork.mode}"] .fork-marker[data-index="${openFork.index}"]`;
      document.querySelector<HTMLElement>(sel)?.focus(); // back to where the fork was opened
    }
    setOpenFork(null);
  }, [openFork]);

  const shown = hovered ?? pinned;
  const shownRun = shown ? session.runs.find((r) => r.mode === shown.mode) : undefined;
  const shownEvent = shown ? (shownRun?.tokens[shown.index] ?? null) : null;
  const shownFork = shown ? shownRun?.forks?.find((f) => f.index === shown.index) : undefined;
  const allTokens = session.runs.flatMap((r) => r.tokens);
  const runErrors = session.runs.filter((r) => r.error);

  return (
    <div className="app">
      <header className="topbar">
        <h1>
          mlx-entropix <span className="subtitle">watch a language model steer by its own uncertainty</span>
        </h1>
        <ViewSwitch view={view} onChange={setView} disabled={running || chatBusy} />
        <p className="model-info muted small" data-testid="model-info">
          {info?.model?.name ? `${info.model.name}${info.model.stored_as ? ` · ${info.model.stored_as}` : ""}` : ""}
          {info?.runtime?.device ? ` · ${info.runtime.device}` : ""}
        </p>
      </header>

      {loadError && (
        <div className="alert" role="alert" data-testid="load-error">
          {loadError}
        </div>
      )}

      {view === "chat" ? (
        <ChatView
          table={table}
          defaults={serverDefaults}
          edits={edits}
          overrides={chatOverrides}
          thresholds={effectiveConfig(serverDefaults, chatOverrides.sampler) as SamplerConfig | null}
          onEdit={(k, v) => setEdits((e) => ({ ...e, [k]: v }))}
          onReset={() => setEdits({})}
          onBusy={setChatBusy}
          tokenLimit={tokenLimit}
        />
      ) : (
      <main className="layout">
        <aside className="sidebar">
          <PromptForm
            values={values}
            prompts={prompts}
            running={running}
            onChange={(patch) => setValues((v) => ({ ...v, ...patch }))}
            onRun={run}
            onStop={stop}
            tokenLimit={tokenLimit}
          />
          <SamplerPanel
            defaults={defaults}
            edits={edits}
            overrides={overrides}
            onEdit={(k, v) => setEdits((e) => ({ ...e, [k]: v }))}
            onReset={() => setEdits({})}
            presets={config?.presets}
            preset={preset}
            onPreset={setPreset}
          />
        </aside>

        <section className="center" aria-label="Output">
          <div className="status-row">
            <p className="status" data-testid="status" data-status={session.status}>
              {statusText(session)}
            </p>
            <p className="sr-only" role="status" aria-live="polite">
              {liveStatus(statusText(session), running)}
            </p>
            <Legend table={table} counts={session.runs.length ? countStates(allTokens) : undefined} />
          </div>
          {(session.error || runErrors.length > 0) && (
            <div className="alert" role="alert" data-testid="error">
              {session.error && <p>{session.error}</p>}
              {runErrors.map((r) => (
                <p key={r.mode}>
                  {r.mode}: {r.error}
                </p>
              ))}
            </div>
          )}
          <div className={`outputs n${Math.max(1, session.runs.length)}`}>
            {session.runs.length === 0 ? (
              <div className="output panel empty">
                <p className="muted">
                  Choose a prompt and press <strong>Generate</strong>. Each token is coloured by how
                  unsure the model was; hover, tap or focus a token to see why it was chosen.
                </p>
              </div>
            ) : (
              session.runs.map((r) => (
                <div className="output panel" key={r.mode} data-testid={`output-${r.mode}`}>
                  <h2 className="output-title">{r.mode}</h2>
                  <StatsBar run={r} table={table} />
                  <ConfidenceBadge done={r.done} />
                  <TokenStream
                    run={r}
                    table={table}
                    selected={pinned?.mode === r.mode ? pinned.index : null}
                    running={running}
                    onInspect={onInspect}
                    onLeave={onLeave}
                    onUnpin={onUnpin}
                    openFork={openFork?.mode === r.mode ? openFork.index : null}
                    onToggleFork={onToggleFork}
                  />
                  {openFork?.mode === r.mode &&
                    (() => {
                      const f = r.forks?.find((x) => x.index === openFork.index);
                      return f ? <ForkView fork={f} onClose={closeFork} /> : null;
                    })()}
                </div>
              ))
            )}
          </div>
          <Charts
            runs={session.runs}
            table={table}
            thresholds={effective as SamplerConfig | null}
            selected={pinned}
            onSelect={(sel) => {
              setPinned(sel);
              setHovered(null);
            }}
          />
        </section>

        <aside className="right">
          <Inspector ev={shownEvent} table={table} pinned={!hovered && !!pinned} fork={shownFork} />
        </aside>
      </main>
      )}
    </div>
  );
}

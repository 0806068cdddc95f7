// The chat view's state: the open conversation, the saved list, streaming a turn, saving.
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, isAbort, streamGeneration } from "../api";
import type { Mode, SamplerConfig, StreamEvent } from "../generated/events";
import * as C from "./conversation";
import { currentId, newId, openStorage, setCurrentId, summaryOf, type ChatStorage, type Summary } from "./persist";
import { checkSettings, turnRequest, type ChatValues } from "./request";
import { MAX_TOKENS } from "../request";
import { importConversation } from "./transfer";

const FLUSH_MS = 30; // streamed events: one render per batch
const SAVE_MS = 400; // while streaming, save at most this often (and at once when a turn ends)

export interface ChatApi {
  conv: C.Conversation | null;
  list: Summary[];
  running: boolean;
  durable: boolean; // false: conversations are not kept across reloads
  notice: string | null; // a form or storage problem, shown above the thread
  send: (text: string) => boolean;
  regenerate: () => void;
  editLast: (text: string) => boolean;
  choose: (turnId: string, mode: Mode) => void;
  stop: () => void;
  setSystem: (text: string) => void;
  newConversation: () => void;
  open: (id: string) => void;
  remove: (id: string) => void;
  importText: (text: string) => boolean;
  clearNotice: () => void;
}

export function useChat(
  values: ChatValues,
  sampler: Partial<SamplerConfig> | null,
  samplerError: boolean,
  tokenLimit = MAX_TOKENS,
): ChatApi {
  const [storage, setStorage] = useState<ChatStorage | null>(null);
  const [conv, setConv] = useState<C.Conversation | null>(null);
  const [list, setList] = useState<Summary[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const convRef = useRef(conv);
  convRef.current = conv;
  const abortRef = useRef<AbortController | null>(null);

  // Open the store; show the last open conversation (or the newest, or a new one).
  useEffect(() => {
    let cancelled = false;
    (async () => {
      const s = await openStorage();
      const saved = await s.list().catch(() => []);
      const want = currentId();
      // An id that was never saved is a new conversation with no turns yet: open a new one.
      const id = want ? saved.find((x) => x.id === want)?.id : saved[0]?.id;
      const loaded = id ? await s.load(id).catch(() => undefined) : undefined;
      if (cancelled) return;
      setStorage(s);
      setList(saved);
      if (loaded) base.current.set(loaded.id, loaded.updated);
      setConv(loaded ? C.settleRunning(loaded) : C.newConversation(newId(), Date.now()));
      if (!s.durable) setNotice("This browser does not let the page store data: conversations last until a reload.");
    })();
    return () => {
      cancelled = true;
      abortRef.current?.abort();
    };
  }, []);

  // Save: at once when idle, throttled while an answer streams in; again when the page hides.
  // `base`: per conversation, the `updated` of the stored version this tab's copy continues
  // (set when loaded, and when a save is sent: this tab's saves run in order). A conversation
  // open in two tabs is never overwritten by the one that did not see the other's turns.
  const saved = useRef<C.Conversation | null>(null);
  const base = useRef(new Map<string, number>());
  const save = useCallback(
    (c: C.Conversation) => {
      if (!storage || saved.current === c || c.turns.length === 0) return;
      saved.current = c;
      const since = base.current.get(c.id) ?? null;
      base.current.set(c.id, c.updated);
      const unsaved = () => {
        if (since === null) base.current.delete(c.id);
        else base.current.set(c.id, since); // what is stored is still that version
      };
      storage.save(c, since).then(
        (written) => {
          if (written) setList((l) => [summaryOf(c), ...l.filter((x) => x.id !== c.id)]);
          else {
            unsaved(); // later saves from this tab are refused too
            setNotice("This conversation was changed in another tab: the changes here are not saved (that tab's are kept). Export JSON to keep these, or reopen the conversation.");
          }
        },
        (err) => {
          unsaved();
          setNotice(`Could not save the conversation: ${err instanceof Error ? err.message : String(err)}. Export it to keep it.`);
        },
      );
    },
    [storage],
  );
  const pending = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const shownId = useRef<string | null>(null);
  useEffect(() => {
    if (!conv) return;
    if (shownId.current !== conv.id) setCurrentId((shownId.current = conv.id));
    if (!C.isRunning(conv)) {
      clearTimeout(pending.current);
      pending.current = undefined;
      save(conv);
      return;
    }
    pending.current ??= setTimeout(() => {
      pending.current = undefined;
      if (convRef.current) save(convRef.current);
    }, SAVE_MS);
  }, [conv, save]);
  useEffect(() => () => clearTimeout(pending.current), []);
  useEffect(() => {
    const onHide = () => convRef.current && save(convRef.current);
    window.addEventListener("pagehide", onHide);
    return () => window.removeEventListener("pagehide", onHide);
  }, [save]);

  const stream = useCallback(async (c: C.Conversation, turnId: string) => {
    const update = (action: C.RunAction) =>
      setConv((cur) => (cur && cur.id === c.id ? C.onRun(cur, turnId, action, Date.now()) : cur));
    const { path, body } = turnRequest(c, turnId);
    const ctrl = new AbortController();
    abortRef.current = ctrl;
    const queue: StreamEvent[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      if (queue.length) update({ type: "events", events: queue.splice(0) });
    };
    try {
      await streamGeneration(path, body, (ev) => {
        queue.push(ev);
        timer ??= setTimeout(flush, FLUSH_MS);
      }, ctrl.signal);
      clearTimeout(timer);
      flush();
      update({ type: "finished" });
    } catch (err) {
      clearTimeout(timer);
      flush();
      if (isAbort(err)) update({ type: "stopped" });
      else update({ type: "failed", message: err instanceof ApiError || err instanceof Error ? err.message : String(err) });
    } finally {
      if (abortRef.current === ctrl) abortRef.current = null;
    }
  }, []);

  /** Check the settings, apply a change that adds a running turn, and stream that turn. */
  const startTurn = useCallback(
    (change: (c: C.Conversation, settings: C.TurnSettings, id: string) => C.Conversation): boolean => {
      const c = convRef.current;
      if (!c) return false;
      if (samplerError) {
        setNotice("Fix the highlighted sampler settings first.");
        return false;
      }
      const checked = checkSettings(values, c.system, sampler, tokenLimit);
      if (!checked.ok) {
        setNotice(checked.error);
        return false;
      }
      let next: C.Conversation;
      const id = newId();
      try {
        next = change(c, checked.settings, id);
      } catch (err) {
        setNotice(err instanceof Error ? err.message : String(err));
        return false;
      }
      setNotice(null);
      convRef.current = next;
      setConv(next);
      void stream(next, C.lastTurn(next)!.id);
      return true;
    },
    [values, sampler, samplerError, stream, tokenLimit],
  );

  const replaceConv = (c: C.Conversation) => {
    convRef.current = c;
    setConv(c);
  };
  const guarded = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      setNotice(err instanceof Error ? err.message : String(err));
    }
  };

  return {
    conv,
    list,
    running: conv ? C.isRunning(conv) : false,
    durable: storage?.durable ?? true,
    notice,
    send: (text) => startTurn((c, s) => C.send(c, text, [newId(), newId()], s, Date.now())),
    regenerate: () => void startTurn((c, s, id) => C.regenerate(c, id, s, Date.now())),
    editLast: (text) => startTurn((c, s, id) => C.editLast(c, text, id, s, Date.now())),
    choose: (turnId, mode) => guarded(() => conv && replaceConv(C.choose(conv, turnId, mode, Date.now()))),
    stop: () => abortRef.current?.abort(),
    setSystem: (text) => conv && replaceConv({ ...conv, system: text, updated: Date.now() }),
    newConversation: () => {
      if (conv && C.isRunning(conv)) return;
      setNotice(null);
      replaceConv(C.newConversation(newId(), Date.now()));
    },
    open: (id) => {
      if (!storage || (conv && C.isRunning(conv))) return;
      storage.load(id).then(
        (c) => {
          if (!c) return setNotice("That conversation is no longer saved.");
          base.current.set(c.id, c.updated);
          saved.current = null;
          setNotice(null);
          replaceConv(C.settleRunning(c));
        },
        (err) => setNotice(`Could not open the conversation: ${String(err)}`),
      );
    },
    remove: (id) => {
      if (!storage || (conv?.id === id && C.isRunning(conv))) return;
      storage.remove(id).then(
        () => {
          setList((l) => l.filter((x) => x.id !== id));
          if (convRef.current?.id === id) replaceConv(C.newConversation(newId(), Date.now()));
        },
        (err) => setNotice(`Could not delete the conversation: ${String(err)}`),
      );
    },
    importText: (text) => {
      if (conv && C.isRunning(conv)) {
        setNotice("Stop the answer being generated before importing.");
        return false;
      }
      try {
        const c = importConversation(text, newId());
        setNotice(null);
        replaceConv({ ...c, updated: Date.now() });
        return true;
      } catch (err) {
        setNotice(err instanceof Error ? err.message : String(err));
        return false;
      }
    },
    clearNotice: () => setNotice(null),
  };
}

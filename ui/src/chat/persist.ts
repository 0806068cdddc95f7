// Where conversations are kept: IndexedDB in the browser (room for many answers with every
// token's metrics, which localStorage's few MB would not hold), in memory where IndexedDB is
// missing (then nothing survives a reload, and the page says so). Only the id of the open
// conversation goes to localStorage.
import type { Conversation } from "./conversation";

export interface Summary {
  id: string;
  title: string;
  updated: number;
  turns: number;
}

export interface ChatStorage {
  readonly durable: boolean;
  list(): Promise<Summary[]>; // newest first
  load(id: string): Promise<Conversation | undefined>;
  /** Write `c`, unless another tab changed it: with `since` (the `updated` of the stored
   * version `c` was built on; null: none stored), a stored version that differs is kept and
   * false returned (nothing written). Without `since`, always written. */
  save(c: Conversation, since?: number | null): Promise<boolean>;
  remove(id: string): Promise<void>;
}

export const summaryOf = (c: Conversation): Summary => ({ id: c.id, title: c.title, updated: c.updated, turns: c.turns.length });
const newestFirst = (a: Summary, b: Summary) => b.updated - a.updated;

/** May `c` overwrite what is stored (`stored`: its summary there, if any)? */
const unchanged = (stored: Summary | undefined, since: number | null | undefined): boolean =>
  since === undefined || (stored?.updated ?? null) === since;

export function memoryStorage(): ChatStorage {
  const items = new Map<string, Conversation>();
  return {
    durable: false,
    list: async () => [...items.values()].map(summaryOf).sort(newestFirst),
    load: async (id) => {
      const c = items.get(id);
      return c && structuredClone(c);
    },
    save: async (c, since) => {
      const stored = items.get(c.id);
      if (!unchanged(stored && summaryOf(stored), since)) return false;
      items.set(c.id, structuredClone(c));
      return true;
    },
    remove: async (id) => void items.delete(id),
  };
}

const DB = "mlx-entropix-chat";
const FULL = "conversations";
const SUMMARIES = "summaries"; // small records, so the list loads without every token

function promised<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((ok, fail) => {
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
    tx.onabort = () => fail(tx.error ?? new Error("the save was aborted"));
  });
}

export async function indexedDbStorage(factory: IDBFactory = indexedDB): Promise<ChatStorage> {
  const open = factory.open(DB, 1);
  open.onupgradeneeded = () => {
    open.result.createObjectStore(FULL, { keyPath: "id" });
    open.result.createObjectStore(SUMMARIES, { keyPath: "id" });
  };
  const db = await promised(open);
  return {
    durable: true,
    list: async () => ((await promised(db.transaction(SUMMARIES).objectStore(SUMMARIES).getAll())) as Summary[]).sort(newestFirst),
    load: async (id) => (await promised(db.transaction(FULL).objectStore(FULL).get(id))) as Conversation | undefined,
    save: async (c, since) => {
      // Check and write in one transaction: another tab's save cannot come in between.
      const tx = db.transaction([FULL, SUMMARIES], "readwrite");
      const summaries = tx.objectStore(SUMMARIES);
      let written = false;
      const get = summaries.get(c.id);
      get.onsuccess = () => {
        if (!unchanged(get.result as Summary | undefined, since)) return;
        tx.objectStore(FULL).put(c);
        summaries.put(summaryOf(c));
        written = true;
      };
      await done(tx);
      return written;
    },
    remove: async (id) => {
      const tx = db.transaction([FULL, SUMMARIES], "readwrite");
      tx.objectStore(FULL).delete(id);
      tx.objectStore(SUMMARIES).delete(id);
      await done(tx);
    },
  };
}

/** IndexedDB if the browser has it (and lets the page use it), else memory. */
export async function openStorage(): Promise<ChatStorage> {
  if (typeof indexedDB === "undefined") return memoryStorage();
  try {
    return await indexedDbStorage();
  } catch {
    return memoryStorage(); // e.g. storage blocked by the browser's privacy settings
  }
}

const CURRENT_KEY = "mlx-entropix.chat.current";

export function currentId(): string | null {
  try {
    return localStorage.getItem(CURRENT_KEY);
  } catch {
    return null;
  }
}

export function setCurrentId(id: string): void {
  try {
    localStorage.setItem(CURRENT_KEY, id);
  } catch {
    // no localStorage: the newest conversation opens after a reload instead
  }
}

export const newId = (): string =>
  typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

const SETTINGS_KEY = "mlx-entropix.chat.settings";

/** The chat's form settings (max tokens, seed, mode) as last used, or `fallback`. */
export function loadSettings<T extends object>(fallback: T): T {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "null");
    if (!saved || typeof saved !== "object") return fallback;
    // Only the known keys, and only strings (what the form holds).
    const out = { ...fallback } as Record<string, unknown>;
    for (const k of Object.keys(fallback)) if (typeof saved[k] === "string") out[k] = saved[k];
    return out as T;
  } catch {
    return fallback;
  }
}

export function saveSettings(values: object): void {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(values));
  } catch {
    // not kept: the defaults come back after a reload
  }
}

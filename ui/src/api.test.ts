import { afterEach, describe, expect, test } from "bun:test";
import { ApiError, detailMessage, getConfig, streamGeneration } from "./api";
import type { StreamEvent } from "./generated/events";
import { done, fork, sse, token } from "./test/fixtures";

const realFetch = globalThis.fetch;
afterEach(() => {
  globalThis.fetch = realFetch;
});

function mockFetch(handler: (url: string, init?: RequestInit) => Response | Promise<Response>) {
  const calls: { url: string; init?: RequestInit }[] = [];
  globalThis.fetch = (async (url: string, init?: RequestInit) => {
    calls.push({ url, init });
    return handler(url, init);
  }) as typeof fetch;
  return calls;
}

function chunked(text: string, size: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
      c.close();
    },
  });
}

const body = { prompt: "hi", mode: "entropix" as const, max_tokens: 4 };

describe("streamGeneration", () => {
  test("POSTs JSON and yields typed events from a chunked CRLF stream", async () => {
    const events = [token(0, "Hello"), token(1, " world\n"), done()];
    const calls = mockFetch(
      () => new Response(chunked(sse(events, "\r\n"), 7), { headers: { "Content-Type": "text/event-stream" } }),
    );
    const got: StreamEvent[] = [];
    await streamGeneration("/api/generate", body, (e) => got.push(e));
    expect(got).toEqual(events);
    expect(calls[0].url).toBe("/api/generate");
    expect(calls[0].init?.method).toBe("POST");
    expect(JSON.parse(String(calls[0].init?.body))).toEqual(body);
  });

  test("an error event is passed on", async () => {
    mockFetch(() => new Response(sse([{ type: "error", mode: null, message: "boom" } as never])));
    const got: StreamEvent[] = [];
    await streamGeneration("/api/generate", body, (e) => got.push(e));
    expect(got).toEqual([{ type: "error", mode: null, message: "boom" }]);
  });

  test("a 4xx answer becomes one clear message from `detail`", async () => {
    mockFetch(() => Response.json({ detail: "Prompt too long: 9000 tokens" }, { status: 413 }));
    const err = await streamGeneration("/api/generate", body, () => undefined).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.message).toBe("Server answered 413: Prompt too long: 9000 tokens");
    expect(err.status).toBe(413);
  });

  test("busy: 503 with Retry-After", async () => {
    mockFetch(() => Response.json({ detail: "busy" }, { status: 503, headers: { "Retry-After": "2" } }));
    const err = await streamGeneration("/api/generate", body, () => undefined).catch((e) => e);
    expect(err.message).toBe("Server answered 503: busy Retry in 2 s.");
  });

  test("queue full: the retry time is named once", async () => {
    mockFetch(() =>
      Response.json(
        { detail: "the server is busy (queue full); retry in 5 s" },
        { status: 503, headers: { "Retry-After": "5" } },
      ),
    );
    const err = await streamGeneration("/api/generate", body, () => undefined).catch((e) => e);
    expect(err.message).toBe("Server answered 503: the server is busy (queue full); retry in 5 s");
    expect(err.message.match(/retry/gi)).toHaveLength(1);
  });

  test("fork events are passed on between token events", async () => {
    const events = [fork(0, 1), token(0, " Reykjavik.", "flowing", "fork"), done("fork", 1)];
    mockFetch(() => new Response(sse(events)));
    const got: StreamEvent[] = [];
    await streamGeneration("/api/generate", { ...body, mode: "fork" }, (e) => got.push(e));
    expect(got).toEqual(events);
  });

  test("server down: the message says how to start it", async () => {
    mockFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    const err = await getConfig().catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.message).toContain("Cannot reach the server");
    expect(err.message).toContain("uv run mlx_server.py");
  });

  test("dev proxy 502 without JSON also explains", async () => {
    mockFetch(() => new Response("Bad Gateway", { status: 502 }));
    const err = await getConfig().catch((e) => e);
    expect(err.message).toContain("uv run mlx_server.py");
  });

  test("abort rejects with an AbortError, not an ApiError", async () => {
    const ctrl = new AbortController();
    mockFetch((_url, init) => {
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode(sse([token(0, "a")])));
          init?.signal?.addEventListener("abort", () => c.error(new DOMException("Aborted", "AbortError")));
        },
      });
      return new Response(stream);
    });
    const got: StreamEvent[] = [];
    const p = streamGeneration("/api/generate", body, (e) => {
      got.push(e);
      ctrl.abort();
    }, ctrl.signal);
    const err = await p.catch((e) => e);
    expect(got).toHaveLength(1);
    expect(err).toBeInstanceOf(DOMException);
    expect(err.name).toBe("AbortError");
  });
});

describe("detailMessage", () => {
  test("string, validation list, missing", () => {
    expect(detailMessage({ detail: "bad" })).toBe("bad");
    expect(
      detailMessage({ detail: [{ loc: ["body", "max_tokens"], msg: "Input should be less than or equal to 4096" }] }),
    ).toBe("max_tokens: Input should be less than or equal to 4096");
    expect(detailMessage({ other: 1 })).toBeUndefined();
    expect(detailMessage(null)).toBeUndefined();
  });
});

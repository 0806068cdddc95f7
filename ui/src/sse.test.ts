import { describe, expect, test } from "bun:test";
import { readSSE, SSEParser, type SSEMessage } from "./sse";

const BODY = 'event: token\ndata: {"a":1}\n\n: ping\n\nevent: done\ndata: {"b":2}\n\n';
const EXPECTED = [
  { event: "token", data: '{"a":1}' },
  { event: "done", data: '{"b":2}' },
];

function parseChunks(chunks: string[]): SSEMessage[] {
  const p = new SSEParser();
  const out = chunks.flatMap((c) => p.feed(c));
  p.end();
  return out.map(({ event, data }) => ({ event, data }));
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
}

describe("SSEParser", () => {
  test("parses named events and skips comment pings", () => {
    expect(parseChunks([BODY])).toEqual(EXPECTED);
  });

  test("any split into two chunks gives the same events", () => {
    for (const body of [BODY, BODY.replaceAll("\n", "\r\n"), BODY.replaceAll("\n", "\r")]) {
      for (let i = 0; i <= body.length; i++) {
        expect(parseChunks([body.slice(0, i), body.slice(i)])).toEqual(EXPECTED);
      }
    }
  });

  test("one character at a time with CRLF", () => {
    expect(parseChunks([...BODY.replaceAll("\n", "\r\n")])).toEqual(EXPECTED);
  });

  test("CR at the end of a chunk followed by LF is one line break, not two", () => {
    // If the LF were taken as a second break, the event would dispatch before its data line.
    expect(parseChunks(["event: x\r", "\ndata: 1\r", "\n\r", "\n"])).toEqual([{ event: "x", data: "1" }]);
  });

  test("multi-line data joins with newlines; no space after the colon is fine", () => {
    expect(parseChunks(["data: line one\ndata:line two\ndata:\n\n"])).toEqual([
      { event: "message", data: "line one\nline two\n" },
    ]);
  });

  test("only one leading space is stripped from a value", () => {
    expect(parseChunks(["data:  two spaces\n\n"])).toEqual([{ event: "message", data: " two spaces" }]);
  });

  test("events without data are not dispatched, and the event name resets", () => {
    expect(parseChunks(["event: a\n\ndata: x\n\n"])).toEqual([{ event: "message", data: "x" }]);
  });

  test("an unterminated final event is dropped", () => {
    expect(parseChunks(["data: complete\n\ndata: partial"])).toEqual([{ event: "message", data: "complete" }]);
  });

  test("id and unknown fields", () => {
    const p = new SSEParser();
    const [msg] = p.feed("id: 7\nretry: 100\nfoo: bar\ndata: d\n\n");
    expect(msg).toEqual({ event: "message", data: "d", id: "7" });
  });
});

describe("readSSE", () => {
  test("decodes UTF-8 split across byte chunks", async () => {
    const bytes = new TextEncoder().encode('event: token\ndata: {"text":"é→🙂"}\n\n');
    // Split inside every multi-byte sequence by using 1-byte chunks.
    const chunks = [...bytes].map((b) => new Uint8Array([b]));
    const out: SSEMessage[] = [];
    for await (const m of readSSE(streamOf(chunks))) out.push(m);
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0].data).text).toBe("é→🙂");
  });
});

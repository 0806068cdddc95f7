// A small Server-Sent Events parser for streams read with fetch (EventSource is GET-only and
// the API streams POST responses). Follows the WHATWG event-stream rules: lines end in CRLF,
// LF or CR; `:` lines are comments (keep-alive pings); `data` lines of one event join with
// "\n"; a blank line dispatches. Chunks may be split anywhere, including inside a CRLF.

export interface SSEMessage {
  event: string; // "message" when the stream names none
  data: string;
  id?: string;
}

export class SSEParser {
  private buffer = "";
  private lastWasCR = false; // a chunk ended in CR: a LF starting the next one is the same break
  private event = "";
  private data: string[] = [];
  private id: string | undefined;

  /** Feed decoded text; returns the events completed by it. */
  feed(chunk: string): SSEMessage[] {
    const out: SSEMessage[] = [];
    let text = chunk;
    if (this.lastWasCR && text.startsWith("\n")) text = text.slice(1);
    this.lastWasCR = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.lastWasCR = true;
        }
      }
      start = i + 1;
      this.line(line, out);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** End of stream: an unterminated final event is dropped, as the spec says. */
  end(): SSEMessage[] {
    this.buffer = "";
    this.reset();
    return [];
  }

  private reset(): void {
    this.event = "";
    this.data = [];
  }

  private line(line: string, out: SSEMessage[]): void {
    if (line === "") {
      if (this.data.length > 0) {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment / ping
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    // "retry" and unknown fields are ignored: we never reconnect a POST.
  }
}

/** Decode a byte stream into SSE messages (UTF-8 split across chunks is handled). */
export async function* readSSE(body: ReadableStream<Uint8Array>): AsyncGenerator<SSEMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
    parser.end();
    finished = true;
  } finally {
    // The consumer stopped early: cancel the body so the connection closes.
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

import type { DoneEvent, ForkEvent, Mode, State, TokenEvent } from "../generated/events";

export function token(index: number, text: string, state: State = "flowing", mode: Mode = "entropix"): TokenEvent {
  return {
    type: "token",
    mode,
    index,
    id: 100 + index,
    text,
    state,
    action: state === "flowing" ? "argmax" : "sample",
    metrics: {
      entropy: 0.05 + index,
      varentropy: 0.02 + 2 * index,
      attn_entropy: 3.21,
      attn_varentropy: 0.456,
      agreement: 0.0123,
      interaction_strength: 4.5678,
    },
    params: { temperature: 0.666, top_p: 0.9, top_k: 27, min_p: 0.03, n_samples: 1 },
    logprob: Math.log(0.75),
    top: [
      { id: 100 + index, text, logprob: Math.log(0.75) },
      { id: 7, text: " other", logprob: Math.log(0.2) },
    ],
    elapsed_s: 0.1 + 0.05 * index,
  };
}

export function done(mode: Mode = "entropix", n = 2): DoneEvent {
  return {
    type: "done",
    mode,
    text: "",
    finish_reason: "length",
    prompt_tokens: 10,
    generated_tokens: n,
    ttft_s: 0.1,
    total_s: 0.2,
    prefill_tok_s: 100,
    decode_tok_s: 20,
    state_counts: { flowing: n },
    action_counts: { argmax: n },
    seed: 42,
    tokens_computed: 0,
    forks: 0,
    confidence: null,
    answer_span: null,
    abstained: false,
    agreement: null,
    confidence_samples: 0,
    cached_tokens: 0,
  };
}

/** A fork before token `index` with three branches; branch `kept` was kept. */
export function fork(index: number, kept = 1, mode: Mode = "fork"): ForkEvent {
  const branch = (i: number, text: string, score: number, answer: string | null) => ({
    token: { id: 500 + i, text: text.split(" ").slice(0, 2).join(" "), logprob: Math.log(0.5 / (i + 1)) },
    text,
    tokens: 4 + i,
    score,
    answer,
    kept: i === kept,
    finish: "stop" as const,
    span: [0, 1],
    margins: [0.5],
    parent: null,
    at: null,
    signal: null,
    cue: null,
  });
  return {
    type: "fork",
    mode,
    index,
    trigger: "first",
    metrics: token(index, "").metrics,
    score: "answer_margin",
    branches: [branch(0, " Oslo is", 0.31, "Oslo"), branch(1, " Reykjavik.", 0.82, "Reykjavik"), branch(2, " <b>x</b>", 0.05, null)],
    kept,
    tokens_computed: 15,
    answer_kind: "contains",
    aggregate: true,
    groups: [
      { answer: "Reykjavik", score: 0.82, branches: 1, best: 1, won: kept === 1 },
      { answer: "Oslo", score: 0.31, branches: 1, best: 0, won: kept === 0 },
    ],
  };
}

/** An SSE body as the server writes it. */
export function sse(events: { type: string }[], eol = "\n"): string {
  return events.map((e) => `event: ${e.type}${eol}data: ${JSON.stringify(e)}${eol}${eol}`).join(`: ping${eol}${eol}`);
}

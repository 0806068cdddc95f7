import type { DoneEvent, Mode, State, TokenEvent } from "../generated/events";

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
  };
}

/** An SSE body as the server writes it. */
export function sse(events: { type: string }[], eol = "\n"): string {
  return events.map((e) => `event: ${e.type}${eol}data: ${JSON.stringify(e)}${eol}${eol}`).join(`: ping${eol}${eol}`);
}

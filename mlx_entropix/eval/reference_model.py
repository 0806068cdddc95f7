"""Our weights in mlx-lm's own Llama: the reference that tests and benchmarks compare with."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..io.load import LoadedModel


def to_mlx_lm(lm: LoadedModel) -> nn.Module:
    """The same weights in mlx-lm's own Llama, as a reference for tests and benchmarks
    (a non-Llama family already runs on mlx-lm's class: that model itself)."""
    from mlx_lm.models import llama

    from ..models.families import FamilyModel

    if isinstance(lm.model, FamilyModel):
        return lm.model.inner
    names = (
        "hidden_size num_hidden_layers intermediate_size num_attention_heads num_key_value_heads "
        "head_dim rms_norm_eps vocab_size max_position_embeddings rope_theta rope_traditional "
        "rope_scaling tie_word_embeddings attention_bias mlp_bias"
    ).split()
    a = lm.model.args
    ref = llama.Model(llama.ModelArgs(model_type="llama", **{k: getattr(a, k) for k in names}))
    params = tree_flatten(lm.model.parameters())
    quantized = {k[: -len(".scales")] for k, _ in params if k.endswith(".scales")}
    if quantized:
        ours = dict(lm.model.named_modules())

        def predicate(path: str, module: nn.Module) -> bool | dict[str, int]:
            if path not in quantized:
                return False
            return {"group_size": ours[path].group_size, "bits": ours[path].bits}

        nn.quantize(ref, class_predicate=predicate)
    ref.load_weights(params, strict=True)
    mx.eval(ref.parameters())
    return ref

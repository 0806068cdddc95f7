"""A lone row's products computed beside a copy of itself, where the BLAS is faster so.

One stream's decode step is all one-row products. With some BLAS builds and weight shapes a
one-row product streams the weights slower than a two-row one: MKL on an AMD EPYC (AVX2),
with 576 inputs (the embedded model's width), takes 11.3 ms for the 49152 x 576 head with one
row and 7.2 with two, and the model's step products 54 against 46 ms
(``benchmarks/rows_bound.py``), while with 1024 or 2048 inputs one row is the faster. So it is
measured per weight shape, on the model's own weights, once per machine
(``runtime.device.two_rows_faster``), and only the shapes that gain are swapped, and only
where the kept row (the first copy) has the bits of the row alone (as ``benchmarks/blas_rows.py``
found for MKL's default and strict modes): the swap changes the speed, not the tokens.
Products of more rows are left as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn


def _as_two_rows(product: Callable[[mx.array], mx.array], x: mx.array) -> mx.array:
    if x.ndim < 2 or x.size != x.shape[-1]:  # not a single row: as it is
        return product(x)
    return product(mx.concatenate([x, x], axis=-2))[..., :1, :]


class TwoRowLinear(nn.Linear):
    def __call__(self, x: mx.array) -> mx.array:
        return _as_two_rows(super().__call__, x)


class TwoRowEmbedding(nn.Embedding):
    """The lookup as before; the tied head's product (``as_linear``) as two rows."""

    def as_linear(self, x: mx.array) -> mx.array:
        return _as_two_rows(super().as_linear, x)


TWINS: dict[type, type] = {nn.Linear: TwoRowLinear, nn.Embedding: TwoRowEmbedding}


def two_row_products(
    model: nn.Module, faster: Callable[[list[mx.array]], bool] | None = None
) -> int:
    """Turn the plain ``Linear`` and ``Embedding`` layers of ``model`` into their two-row
    twins, in place (the same parameters and names): per weight shape, where ``faster`` says
    so of that shape's weights (None: every shape). Quantized and sharded layers are other
    classes and stay as they are. Returns how many were turned."""
    by_shape: dict[tuple[int, ...], list[nn.Module]] = defaultdict(list)
    for _, module in model.named_modules():
        if type(module) in TWINS:
            by_shape[tuple(module.weight.shape)].append(module)
    turned = 0
    for modules in by_shape.values():
        if faster is not None and not faster([m.weight for m in modules]):
            continue
        for module in modules:
            module.__class__ = TWINS[type(module)]
            turned += 1
    return turned

"""``mx.compile`` for the pure per-token functions (metrics, decision, filters, draw, packing).

Uncompiled, Python builds about a thousand small MLX ops per token and the device runs each
alone; compiled, the graph is traced once per (function, static parameters, input shapes),
simplified, and its element-wise chains fused (on the CPU into C++ kernels built with the
system compiler; MLX runs the graph unfused when it finds none). Per-request values, the
sampler config included, enter as arrays (``config_array``), so a new request or a new config
does not recompile; only structural parameters (mode, candidate width, ...) key the cache.

Whether to compile is decided outside the core (``runtime.device.compile_steps``, recorded on
the loaded model); a function that fails to trace falls back, once and for good, to the plain
function, which gives the same results.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from ..config import SamplerConfig

# The numeric knobs of SamplerConfig, in a fixed order: the layout of ``config_array``.
CONFIG_FIELDS: tuple[str, ...] = (
    *(name for name, f in SamplerConfig.model_fields.items() if f.annotation in (int, float)),
    "greedy_mask",  # a property: ``greedy_states`` as bits
)
_failed: set[tuple[Any, ...]] = set()
_OFF = ("0", "false", "no", "off")
_paused = False  # ``pause``: uncompiled until the kernels are built (a fresh machine's first run)


class ConfigArrays:
    """Attribute view of a ``config_array``: ``cfg.top_k`` is a float32 scalar array, so the
    same traced graph serves every config."""

    def __init__(self, values: mx.array):
        self._values = values

    def __getattr__(self, name: str) -> mx.array:
        try:
            return self._values[CONFIG_FIELDS.index(name)]
        except ValueError:
            raise AttributeError(name) from None


@functools.lru_cache(maxsize=32)
def _config_array(values: tuple[float, ...]) -> mx.array:
    return mx.array(values, dtype=mx.float32)


def config_array(cfg: SamplerConfig) -> mx.array:
    """The numeric fields of ``cfg`` as one float32 vector (cached per distinct config)."""
    return _config_array(tuple(float(getattr(cfg, name)) for name in CONFIG_FIELDS))


@functools.lru_cache(maxsize=64)
def _build(fn: Callable, enabled: bool, shapeless: bool, static: tuple) -> Callable:
    pure = functools.partial(fn, **dict(static)) if static else fn
    if not enabled:
        return pure
    traced = mx.compile(pure, shapeless=shapeless)
    key = (fn, shapeless, static)

    def run(*args: mx.array) -> Any:
        if key not in _failed:
            try:
                return traced(*args)
            except (RuntimeError, ValueError) as err:  # a trace MLX cannot compile
                _failed.add(key)
                warnings.warn(
                    f"mx.compile failed for {fn.__name__} ({err}); running it uncompiled",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return pure(*args)

    return run


def compiled(
    fn: Callable, enabled: bool = True, shapeless: bool = False, **static: Any
) -> Callable:
    """``fn`` with ``static`` keyword arguments bound, compiled when ``enabled``.

    Cached per (fn, enabled, shapeless, static): call it every step at no cost. ``shapeless``
    for inputs whose shape changes every step (attention scores grow with the context): the
    function must then not bake a shape into its graph.
    """
    # ``MLX_ENTROPIX_COMPILE=0`` (read by ``runtime.device`` too) also covers the callers that
    # have no loaded model at hand (the model's prefill activation); so does ``pause``.
    off = _paused or os.environ.get("MLX_ENTROPIX_COMPILE", "").strip().lower() in _OFF
    return _build(fn, enabled and not off, shapeless, tuple(sorted(static.items())))


def pause(paused: bool) -> None:
    """Run every compiled function uncompiled (True) or compiled again (False): a first run
    waits for no kernel build (``runtime.kernels``); the same results either way."""
    global _paused
    _paused = paused

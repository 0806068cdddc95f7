"""Tensor parallelism over MLX's distributed engine (``mlx.launch``: ring over TCP/Thunderbolt,
or MPI), with mlx's own sharded layers (``mlx.nn.layers.distributed.shard_linear``).

What is split over N ranks:
- MLP, always: gate/up by output rows, down by input columns (one all-reduce per layer);
  ``intermediate_size`` must divide by N: the MLP is most of a Llama's weights, and a run that
  keeps it whole on every rank saves no memory.
- Attention, by kv-head groups: q/k/v by output rows, o by input columns (the second
  all-reduce), when ``num_key_value_heads`` divides by N (every rank keeps whole GQA groups and
  its slice of the KV cache); else whole on every rank (``plan_sharding``: auto/shard/replicate).
- Embedding, norms and the head stay whole: the logits and the hidden state between blocks are
  complete on every rank.

This module reaches the model through its attribute names only (``layers[i].self_attn.q_proj``
...), as mlx-lm's ``Model.shard`` does; the runtime room imports nothing of the package.
"""

from __future__ import annotations

import re
import socket
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import mlx.core as mx
from mlx.nn.layers.distributed import shard_linear

AttentionSharding = Literal["auto", "shard", "replicate"]
ATTENTION_CHOICES: tuple[AttentionSharding, ...] = ("auto", "shard", "replicate")


class ShardingError(ValueError):
    """The model cannot be split over this many ranks; the message says which size and why."""


@dataclass(frozen=True)
class ShardPlan:
    ranks: int
    attention: bool  # query/kv heads (and the KV cache) split across ranks
    mlp: bool
    heads_per_rank: int  # query heads of the last layer each rank scores
    note: str  # one line for people: what is split, what is whole


def init_group() -> mx.distributed.Group | None:
    """The group of all ranks when launched by ``mlx.launch`` with more than one, else None."""
    group = mx.distributed.init()
    return group if group.size() > 1 else None


def ranks_here(group: mx.distributed.Group) -> int:
    """How many of the group's ranks run on this machine (by host name; one all_gather)."""
    mine = zlib.crc32(socket.gethostname().encode()) & 0x7FFFFFFF
    names = mx.distributed.all_gather(mx.array([mine], dtype=mx.int32), group=group)
    return int((names == mine).sum().item())


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return mx.distributed.init().rank()


def plan_sharding(
    n_heads: int,
    n_kv_heads: int,
    intermediate_size: int,
    ranks: int,
    attention: AttentionSharding = "auto",
) -> ShardPlan:
    """Decide what to split over ``ranks`` and check that it divides (``ShardingError`` if not)."""
    if attention not in ATTENTION_CHOICES:
        raise ShardingError(f"attention sharding must be one of {ATTENTION_CHOICES}")
    if ranks < 1:
        raise ShardingError(f"the number of ranks must be at least 1 (got {ranks})")
    if intermediate_size % ranks:
        raise ShardingError(
            f"cannot split the model over {ranks} ranks: the MLP width (intermediate_size "
            f"{intermediate_size}) does not divide by {ranks}; use a number of ranks that "
            f"divides it"
        )
    heads_divide = n_kv_heads % ranks == 0 and n_heads % ranks == 0
    if attention == "shard" and not heads_divide:
        raise ShardingError(
            f"cannot split attention over {ranks} ranks: {n_kv_heads} kv heads "
            f"({n_heads} query heads) do not divide by {ranks}; use a number of ranks that "
            f"divides {n_kv_heads}, or keep attention whole on every rank (attention 'auto')"
        )
    split = heads_divide and attention != "replicate" and ranks > 1
    why = "by choice" if attention == "replicate" else f"{n_kv_heads} kv heads"
    heads = f"split ({n_heads // ranks} query / {n_kv_heads // ranks} kv heads per rank)"
    note = (
        f"{ranks} ranks: MLP split ({intermediate_size // ranks} of {intermediate_size} per rank), "
        f"attention {heads if split else f'whole on every rank ({why})'}"
    )
    return ShardPlan(
        ranks=ranks,
        attention=split,
        mlp=ranks > 1,
        heads_per_rank=n_heads // ranks if split else n_heads,
        note=note,
    )


def shard_model(
    model: Any, group: mx.distributed.Group, attention: AttentionSharding = "auto"
) -> ShardPlan:
    """Split ``model`` (our ``models.llama.Model``) in place over ``group``, before its weights
    are evaluated (lazy weights are sliced first, so each rank materializes only its share).
    Sets ``model.group`` and, when the heads are split, ``model.head_group`` (``protocol.py``)."""
    args = model.args
    n = group.size()
    plan = plan_sharding(
        args.num_attention_heads, args.num_key_value_heads, args.intermediate_size, n, attention
    )
    for layer in model.layers:
        if plan.attention:
            attn = layer.self_attn
            # Query heads are ordered by GQA group (head h reads kv head h // rep), so
            # contiguous row blocks of q and of k/v select the same whole groups.
            for name in ("q_proj", "k_proj", "v_proj"):
                split = shard_linear(getattr(attn, name), "all-to-sharded", group=group)
                setattr(attn, name, split)
            attn.o_proj = shard_linear(attn.o_proj, "sharded-to-all", group=group)
            attn.n_heads //= n
            attn.n_kv_heads //= n
        if plan.mlp:
            mlp = layer.mlp
            mlp.gate_proj = shard_linear(mlp.gate_proj, "all-to-sharded", group=group)
            mlp.up_proj = shard_linear(mlp.up_proj, "all-to-sharded", group=group)
            mlp.down_proj = shard_linear(mlp.down_proj, "sharded-to-all", group=group)
    model.group = group if n > 1 else None
    model.head_group = group if plan.attention else None
    return plan


# mlx.launch's own line for a rank that failed: it exits 0 whatever its ranks did
_RANK_EXIT = re.compile(r"Node with rank \d+ (?:exited with code (-?\d+)|was killed)")


def launch_status(stderr: str) -> int:
    """The exit status of an ``mlx.launch`` run, from its ranks': MLX's launcher exits 0 even
    when every rank failed, and only warns "Node with rank R exited with code C" (or "was
    killed") on its stderr. The first rank's own failure (C -15 is the launcher stopping the
    other ranks after it), else 0."""
    codes = [int(c) if c else -9 for c in _RANK_EXIT.findall(stderr)]
    return next((c for c in codes if c != -15), codes[0] if codes else 0)

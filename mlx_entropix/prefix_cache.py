"""A prefix cache: the keys and values of prompts already prefilled, reused by later prompts.

Every OpenAI client resends the whole conversation with each turn; without a cache, turn ten
prefills again everything turn nine prefilled. Here the KV of a prefill is kept in blocks of
``PREFILL_CHUNK`` tokens, exactly the prefill's chunks: block i holds positions
[128 i, 128 (i + 1)) as the chunked prefill computed them (``generate``'s chunks, an mlx-lm
``KVCache``), and a block is known by its tokens and all the tokens before it (a chain of
digests). A prompt that starts with cached blocks starts its prefill at the first block not
cached, as the later chunks of the same chunking, on a cache laid out as a fresh prefill's:
the same operations on the same values, so the same bits (``tests/test_prefix_cache.py``).
Only whole chunks are kept (a partial last chunk is computed again with what follows it), and
never the block holding a prompt's last token (its prefill must compute the last logits), so a
prompt reuses at most ``(len - 1) // 128`` blocks.

Blocks come only from chunked prefills: a short prompt's batched prefill (``batch.py``) and the
decode steps' shared cache compute the same positions by other operations. What a request
generated enters the cache by a chunked prefill of prompt + generated tokens when the server is
idle (``BatchDecoder.idle_step``).

Bounded in bytes; the least recently used block without cached children goes first (a block
whose child is cached is an ancestor every use of the child touched too). Single-threaded, as
the decoder that owns it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache

from .generate import PREFILL_CHUNK

__all__ = ["BLOCK", "Extender", "PrefixCache", "Prefilled", "prefill_chunks", "reusable_blocks"]
BLOCK = PREFILL_CHUNK
KV = list[tuple[mx.array, mx.array]]  # per layer: keys, values (kv heads, BLOCK, head dim)


def reusable_blocks(n_tokens: int) -> int:
    """Whole blocks before a prompt's last token: the most a prompt of ``n_tokens`` reuses."""
    return max(n_tokens - 1, 0) // BLOCK


def chain_keys(ids: Sequence[int], blocks: int) -> list[bytes]:
    """The keys of the first ``blocks`` blocks of ``ids``: each digests its parent's key and its
    own tokens, so equal keys mean equal prefixes."""
    keys, parent = [], b""
    for b in range(blocks):
        chunk = ",".join(map(str, ids[b * BLOCK : (b + 1) * BLOCK])).encode()
        parent = hashlib.blake2b(parent + chunk, digest_size=16).digest()
        keys.append(parent)
    return keys


@dataclass(eq=False)
class _Block:
    parent: bytes | None
    kv: KV
    nbytes: int
    used: int = 0
    children: int = 0


@dataclass
class PrefixCache:
    """Blocks of prefilled KV, at most ``max_bytes`` of them, least recently used out first."""

    max_bytes: int
    blocks: dict[bytes, _Block] = field(default_factory=dict)
    nbytes: int = 0
    hits: int = 0  # lookups that reused at least one block
    misses: int = 0
    cached_tokens: int = 0  # prompt tokens served from the cache, all lookups together
    evictions: int = 0
    _clock: int = 0

    def lookup(
        self, ids: Sequence[int], count: bool = True, limit: int | None = None
    ) -> tuple[int, list[KV]]:
        """The cached blocks ``ids`` can reuse, from the start: (tokens, blocks), at most
        ``limit`` blocks (default: those before the last token). Marks them used; ``count``: a
        request's lookup (hits, misses and cached tokens count it)."""
        found: list[KV] = []
        limit = reusable_blocks(len(ids)) if limit is None else limit
        for key in chain_keys(ids, limit):
            block = self.blocks.get(key)
            if block is None:
                break
            self._clock += 1
            block.used = self._clock
            found.append(block.kv)
        if count:
            self.hits += bool(found)
            self.misses += not found
            self.cached_tokens += len(found) * BLOCK
        return len(found) * BLOCK, found

    def insert(self, ids: Sequence[int], cache: Sequence[KVCache], block: int) -> bool:
        """Keep block ``block`` of ``ids`` from a chunked prefill's ``cache`` (which holds at
        least its positions). Only a block whose parent is cached is kept (else it could never
        be found); False when it was not kept (no parent, or no room)."""
        keys = chain_keys(ids, block + 1)
        key, parent = keys[-1], (keys[-2] if block else None)
        if key in self.blocks:
            self.blocks[key].used = self._tick()
            return True
        if parent is not None and parent not in self.blocks:
            return False
        span = slice(block * BLOCK, (block + 1) * BLOCK)
        # copies: a slice would keep the whole prefill's buffer alive
        kv = [(mx.contiguous(c.keys[0, :, span]), mx.contiguous(c.values[0, :, span]))
              for c in cache]  # fmt: skip
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        if not self._make_room(nbytes, keep=set(keys[:-1])):
            return False
        mx.eval(kv)
        self.blocks[key] = _Block(parent, kv, nbytes, used=self._tick())
        if parent is not None:
            self.blocks[parent].children += 1
        self.nbytes += nbytes
        return True

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _make_room(self, nbytes: int, keep: set[bytes]) -> bool:
        """Evict least recently used leaves (not in ``keep``) until ``nbytes`` more fit."""
        while self.nbytes + nbytes > self.max_bytes:
            leaves = [
                (b.used, k) for k, b in self.blocks.items() if not b.children and k not in keep
            ]
            if not leaves:
                return False
            self._evict(min(leaves)[1])
        return True

    def _evict(self, key: bytes) -> None:
        block = self.blocks.pop(key)
        self.nbytes -= block.nbytes
        self.evictions += 1
        if block.parent is not None and block.parent in self.blocks:
            self.blocks[block.parent].children -= 1

    def clear(self) -> None:
        self.blocks.clear()
        self.nbytes = 0

    def info(self) -> dict[str, Any]:
        """What ``/api/info`` reports."""
        return {
            "enabled": self.max_bytes > 0,
            "max_mb": self.max_bytes / 2**20,
            "used_mb": round(self.nbytes / 2**20, 3),
            "blocks": len(self.blocks),
            "block_tokens": BLOCK,
            "hits": self.hits,
            "misses": self.misses,
            "cached_tokens": self.cached_tokens,
            "evictions": self.evictions,
        }


def preloaded(blocks: list[KV], n_layers: int) -> list[KVCache]:
    """An mlx-lm cache holding ``blocks``, laid out as a fresh chunked prefill of those tokens
    leaves it (capacity grown in ``KVCache.step`` steps, zeros past the end): the next chunk's
    update then sees the same buffer shapes and values as without the cache."""
    caches = [KVCache() for _ in range(n_layers)]
    if not blocks:
        return caches
    n = len(blocks) * BLOCK
    room = -(-n // KVCache.step) * KVCache.step
    for layer, c in enumerate(caches):
        parts = []
        for i in (0, 1):
            held = mx.concatenate([kv[layer][i] for kv in blocks], axis=1)[None]
            pad = mx.zeros((*held.shape[:2], room - n, held.shape[3]), held.dtype)
            parts.append(mx.concatenate([held, pad], axis=2) if room > n else held)
        c.keys, c.values, c.offset = parts[0], parts[1], n
    return caches


@dataclass
class Prefilled:
    """A chunked prefill's result: its cache, the tokens it took from the prefix cache, and
    the last chunk's logits (last position) and scores (None if it computed nothing)."""

    cache: list[KVCache]
    cached: int
    logits: mx.array | None
    scores: mx.array | None


def prefill_chunks(
    model: Any,
    ids: Sequence[int],
    prefix: PrefixCache | None,
    *,
    count: bool = True,
    whole_only: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> Generator[None, None, Prefilled]:
    """``generate``'s chunked prefill of ``ids``, a layer at a time (``model.layer_steps``),
    from the cached blocks on; each whole chunk enters ``prefix`` once all its layers are done
    (a cancel between layers leaves no part of a block). ``whole_only``: stop after the last
    whole block (filling the cache, no logits wanted). ``progress(n)``: n more tokens are in
    (the cached ones, then each chunk)."""
    limit = len(ids) // BLOCK if whole_only else None
    start, blocks = prefix.lookup(ids, count, limit) if prefix is not None else (0, [])
    cache = preloaded(blocks, len(model.layers))
    if start:
        progress(start)
    end = len(ids) // BLOCK * BLOCK if whole_only else len(ids)
    logits = scores = None
    for at in range(start, end, BLOCK):
        chunk = list(ids[at : at + BLOCK])
        steps = model.layer_steps(mx.array(chunk)[None], cache, at + len(chunk) >= end)
        logits, scores = yield from steps
        progress(len(chunk))
        if prefix is not None and len(chunk) == BLOCK:
            prefix.insert(ids, cache, at // BLOCK)
    return Prefilled(cache, start, logits, scores)


class Extender:
    """What requests generated, put in the cache by chunked prefills while the server is idle:
    the next turn of a conversation then finds its previous answer cached too. The newest few
    token sequences wait; one is filled a layer per ``step``."""

    def __init__(self, prefix: PrefixCache, model: Any, keep: int = 4):
        self.prefix, self.model = prefix, model
        self.waiting: deque[list[int]] = deque(maxlen=keep)
        self.current: Generator[None, None, Prefilled] | None = None

    def add(self, ids: list[int]) -> None:
        """Queue ``ids`` (a prompt and what one row generated) if it has uncached whole blocks."""
        if self.prefix.max_bytes > 0 and len(ids) >= BLOCK and ids not in self.waiting:
            self.waiting.append(ids)

    def step(self) -> bool:
        """One layer of the filling; False when there is nothing to fill."""
        while self.current is None:
            if not self.waiting:
                return False
            ids = self.waiting.pop()  # the newest first: the likeliest next turn
            self.current = prefill_chunks(self.model, ids, self.prefix, count=False,
                                          whole_only=True)  # fmt: skip
        try:
            next(self.current)
        except StopIteration:
            self.current = None
        return True

    def reset(self) -> None:
        self.waiting.clear()
        self.current = None

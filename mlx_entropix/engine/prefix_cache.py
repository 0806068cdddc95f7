"""A prefix cache: the keys and values of prompts already prefilled, reused by later prompts.

Every OpenAI client resends the whole conversation with each turn; without a cache, turn ten
prefills again everything turn nine prefilled. Here the KV of a prefill is kept in blocks that
are exactly the prefill's chunks (an mlx-lm ``KVCache`` per layer, ``layer_steps``), and a
block is known by its tokens and all the tokens before it (a chain of digests). A prompt that
starts with cached blocks starts its prefill at the first block not cached, as the later chunks
of the same chunking, on a cache laid out as a fresh prefill's: the same operations on the same
values, so the same bits (``tests/test_prefix_cache.py``). Never the chunk holding a prompt's
last token is reused (its prefill must compute the last logits); a short one is computed with
the chunk before it, in one pass (``final_pass``).

The chunking (``chunk_ends``) is a function of the tokens, decided causally: a chunk ends after
``BLOCK`` (128) tokens or right after an end-of-turn token, whichever comes first. So a chat
prompt's chunks end where its messages end, and the next turn of the conversation (the same
messages, the answer, a new message) finds every chunk up to the answer's end cached: it
prefills only its new message. (Fixed 128-token chunks would compute again up to 127 tokens of
the history; chunks of other lengths give other bits, so the boundaries must be the same with
the cache on or off, hence a rule of the tokens alone.)

Blocks come only from chunked prefills: a short prompt's batched prefill (``batch.py``) and the
decode steps' shared cache compute the same positions by other operations. What a request
generated enters the cache by a chunked prefill of prompt + generated tokens when the server is
idle (``Extender``, ``BatchDecoder.idle_step``).

Bounded in bytes; the least recently used block without cached children goes first (a block
whose child is cached is an ancestor every use of the child touched too). Single-threaded, as
the decoder that owns it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache

from .request import PREFILL_CHUNK

if TYPE_CHECKING:
    from ..models.protocol import LayerSteps

__all__ = ["BLOCK", "Extender", "PrefixCache", "chunk_ends", "closing_token",
           "final_pass", "prefill_chunks", "reusable"]  # fmt: skip
BLOCK = PREFILL_CHUNK
HOT_KEEP = 4  # prefills whose buffers are kept for a next turn (``PrefixCache.hot``)
KV = list[tuple[mx.array, mx.array]]  # per layer: keys, values (kv heads, chunk, head dim)
TurnEnds = frozenset[int] | set[int] | Sequence[int]
# A chunked prefill's result: its cache, the tokens it took from the prefix cache, and the last
# chunk's logits (last position) and scores (None if it computed nothing).
Chunked = tuple[list[KVCache], int, mx.array | None, mx.array | None]


def chunk_ends(ids: Sequence[int], turn_ends: TurnEnds = ()) -> list[int]:
    """Where the prefill's chunks of ``ids`` end (the module's rule, causal: a prompt's chunks
    are the first chunks of any longer prompt it starts), the last one at ``len(ids)``."""
    ends, start = [], 0
    for i, token in enumerate(ids):
        if i + 1 - start == BLOCK or token in turn_ends:
            ends.append(i + 1)
            start = i + 1
    if start < len(ids):
        ends.append(len(ids))
    return ends


def complete(ids: Sequence[int], ends: list[int], turn_ends: TurnEnds) -> int:
    """How many of the chunks ``ends`` are whole (the last one may be cut by the end of ids)."""
    if not ends:
        return 0
    start = ends[-2] if len(ends) > 1 else 0
    last_whole = ends[-1] - start == BLOCK or ids[ends[-1] - 1] in turn_ends
    return len(ends) if last_whole else len(ends) - 1


def final_pass(ends: list[int]) -> int:
    """The first of the chunks ``ends`` that a prompt's last pass computes: the last chunk, and
    the one before it too when both together are at most ``BLOCK`` tokens. A follow-up turn's
    new message and the turn header after it (two chunks: the message ends a turn) then cost
    one pass over the weights, not two. A rule of the chunks alone: the same passes with the
    cache on or off. Blocks of a merged pass are not cached (a pass of their own gives other
    bits); the prefix cache's filling (``Extender``) computes them on their own."""
    last = len(ends) - 1
    if last >= 1 and ends[-1] - (ends[last - 2] if last >= 2 else 0) <= BLOCK:
        return last - 1
    return max(last, 0)


def reusable(ids: Sequence[int], turn_ends: TurnEnds = ()) -> int:
    """Tokens a prompt can take from the cache at most: its chunks before its last pass."""
    ends = chunk_ends(ids, turn_ends)
    first = final_pass(ends)
    return ends[first - 1] if first else 0


def chain_keys(ids: Sequence[int], ends: list[int]) -> list[bytes]:
    """The keys of the chunks of ``ids`` ending at ``ends``: each digests its parent's key and
    its own tokens, so equal keys mean equal prefixes (and equal chunking)."""
    keys, parent, start = [], b"", 0
    for end in ends:
        chunk = ",".join(map(str, ids[start:end])).encode()
        parent = hashlib.blake2b(parent + chunk, digest_size=16).digest()
        keys.append(parent)
        start = end
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
    # The last few chunked prefills' own buffers (tokens, per layer keys and values, bytes,
    # last use), newest first: a follow-up turn starts from its previous turn's (``take_hot``).
    hot: list[tuple[list[int], KV, int, int]] = field(default_factory=list)
    _clock: Iterator[int] = field(default_factory=itertools.count)  # use times, increasing

    def lookup(self, ids: Sequence[int], ends: list[int], count: bool = True) -> list[KV]:
        """The cached blocks of the chunks ``ends`` of ``ids``, from the start, as far as they
        are cached. Marks them used; ``count``: a request's lookup (hits, misses and cached
        tokens count it)."""
        found: list[KV] = []
        for key in chain_keys(ids, ends):
            block = self.blocks.get(key)
            if block is None:
                break
            block.used = next(self._clock)
            found.append(block.kv)
        if count:
            self.hits += bool(found)
            self.misses += not found
            self.cached_tokens += ends[len(found) - 1] if found else 0
        return found

    def insert(
        self, ids: Sequence[int], ends: list[int], cache: Sequence[KVCache], block: int
    ) -> bool:
        """Keep chunk ``block`` (of the chunks ``ends`` of ``ids``) from a chunked prefill's
        ``cache``, which holds at least its positions. Only a block whose parent is cached is
        kept (else it could never be found); False when it was not kept (no parent, no room)."""
        keys = chain_keys(ids, ends[: block + 1])
        key, parent = keys[-1], (keys[-2] if block else None)
        if key in self.blocks:
            self.blocks[key].used = next(self._clock)
            return True
        if parent is not None and parent not in self.blocks:
            return False
        span = slice(ends[block - 1] if block else 0, ends[block])
        # copies: a slice would keep the whole prefill's buffer alive
        kv = [(mx.contiguous(c.keys[0, :, span]), mx.contiguous(c.values[0, :, span]))
              for c in cache]  # fmt: skip
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        if not self._make_room(nbytes, keep=set(keys[:-1])):
            return False
        mx.eval(kv)
        self.blocks[key] = _Block(parent, kv, nbytes, used=next(self._clock))
        if parent is not None:
            self.blocks[parent].children += 1
        self.nbytes += nbytes
        return True

    def keep_hot(self, ids: Sequence[int], cache: Sequence[KVCache]) -> None:
        """Keep ``cache`` (a chunked prefill's, its first ``len(ids)`` positions computed as the
        chunks' own passes) for the next prefill of a prompt that starts with ``ids`` (at most
        ``HOT_KEEP``; in the bound, as the most recently used entry)."""
        if not ids:
            return
        kv = [(c.keys, c.values) for c in cache]
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        while len(self.hot) >= HOT_KEEP:
            self._drop_hot(-1)
        if nbytes <= self.max_bytes and self._make_room(nbytes, keep=set()):
            self.hot.insert(0, (list(ids), kv, nbytes, next(self._clock)))
            self.nbytes += nbytes

    def take_hot(self, ids: Sequence[int], n: int) -> list[KVCache] | None:
        """Kept buffers as a cache holding ``ids[:n]`` (the same values as the cached blocks of
        those positions; past them whatever the buffer held), if some hold that prefix; they
        leave the prefix cache, so the prefill writes its new keys into them in place."""
        head = list(ids[:n])
        match = next((i for i, (held, *_) in enumerate(self.hot) if held[:n] == head), None)
        if n == 0 or match is None or len(self.hot[match][0]) < n:
            return None
        kv = self.hot[match][1]
        self._drop_hot(match)
        caches = [KVCache() for _ in kv]
        for c, (k, v) in zip(caches, kv, strict=True):
            c.keys, c.values, c.offset = k, v, n
        return caches

    def _drop_hot(self, i: int) -> None:
        self.nbytes -= self.hot.pop(i)[2]

    def _make_room(self, nbytes: int, keep: set[bytes]) -> bool:
        """Evict least recently used leaves (not in ``keep``) and kept buffers until ``nbytes``
        more fit."""
        while self.nbytes + nbytes > self.max_bytes:
            leaves = [
                (b.used, k) for k, b in self.blocks.items() if not b.children and k not in keep
            ]
            if self.hot and (not leaves or self.hot[-1][3] < min(leaves)[0]):
                self._drop_hot(-1)  # the oldest kept buffers
                continue
            if not leaves:
                return False
            block = self.blocks.pop(min(leaves)[1])
            self.nbytes -= block.nbytes
            self.evictions += 1
            if block.parent is not None and block.parent in self.blocks:
                self.blocks[block.parent].children -= 1
        return True

    def info(self) -> dict[str, Any]:
        """What ``/api/info`` reports."""
        return {
            "enabled": self.max_bytes > 0,
            "max_mb": self.max_bytes / 2**20,
            "used_mb": round(self.nbytes / 2**20, 3),
            "blocks": len(self.blocks),
            "hot_tokens": [len(held) for held, *_ in self.hot],
            "max_block_tokens": BLOCK,
            "hits": self.hits,
            "misses": self.misses,
            "cached_tokens": self.cached_tokens,
            "evictions": self.evictions,
        }


def _capacity(sizes: list[int]) -> int:
    """The buffer length a ``KVCache`` has after updates of ``sizes`` tokens (its growth rule:
    whole ``step``s; a buffer not ending on a step is cut at its end first)."""
    room = held = 0
    for n in sizes:
        if held + n > room:
            grow = -(-n // KVCache.step) * KVCache.step
            room = (held if held % KVCache.step else room) + grow if room else grow
        held += n
    return room


def preloaded(blocks: list[KV], n_layers: int) -> list[KVCache]:
    """An mlx-lm cache holding ``blocks``, laid out as the fresh chunked prefill of those chunks
    leaves it (the same capacity, zeros past the end): the next chunk's update then sees the
    same buffer shapes and values as without the cache."""
    caches = [KVCache() for _ in range(n_layers)]
    if not blocks:
        return caches
    sizes = [kv[0][0].shape[1] for kv in blocks]
    n, room = sum(sizes), _capacity(sizes)
    for layer, c in enumerate(caches):
        parts = []
        for i in (0, 1):
            held = [kv[layer][i] for kv in blocks]
            if room > n:  # one copy: the blocks and the zeros together
                held.append(mx.zeros((held[0].shape[0], room - n, held[0].shape[2]), held[0].dtype))
            parts.append(mx.concatenate(held, axis=1)[None])
        c.keys, c.values, c.offset = parts[0], parts[1], n
    return caches


def prefill_chunks(
    model: LayerSteps,
    ids: Sequence[int],
    prefix: PrefixCache | None,
    turn_ends: TurnEnds = (),
    *,
    whole_only: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> Generator[None, None, Chunked]:
    """The chunked prefill of ``ids`` (``chunk_ends``), a layer at a time (``layer_steps``),
    from the cached blocks on; each whole chunk enters ``prefix`` once all its layers are done
    (a cancel between layers leaves no part of a block). ``whole_only``: only the whole chunks
    (filling the cache: no logits, no lookup counted). ``progress(n)``: n more tokens are in
    (the cached ones, then each chunk). The same chunks with ``prefix`` None: the same bits."""
    ends = chunk_ends(ids, turn_ends)
    whole = complete(ids, ends, turn_ends)
    ends = ends[:whole] if whole_only else ends
    # the last pass (the last token's chunk, maybe with the one before) is always computed
    last = len(ends) if whole_only else final_pass(ends)
    blocks = prefix.lookup(ids, ends[:last], not whole_only) if prefix is not None else []
    start = ends[len(blocks) - 1] if blocks else 0
    hot = prefix.take_hot(ids, start) if prefix is not None else None
    cache = hot or preloaded(blocks, len(model.layers))
    progress(start)
    logits = scores = None
    passes = [(j, j + 1) for j in range(len(blocks), last)]
    for a, b in passes if whole_only else [*passes, (last, len(ends))]:
        at, end = ends[a - 1] if a else 0, ends[b - 1]
        steps = model.layer_steps(mx.array(ids[at:end])[None], cache, b == len(ends))
        logits, scores = yield from steps
        progress(end - at)
        if prefix is not None and b == a + 1 and a < whole:
            prefix.insert(ids, ends, cache, a)
    if prefix is not None:  # what its chunks' own passes computed (not a merged last pass)
        prefix.keep_hot(ids[: ends[last - 1] if last else 0], cache)
    return cache, start, logits, scores


def closing_token(tokenizer: Any, turn_ends: TurnEnds) -> int | None:
    """The end-of-turn token a chat template closes an assistant message with (None: no
    template, or none of ``turn_ends`` there)."""
    try:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            add_generation_prompt=False,
        )
    except Exception:  # a template that refuses this conversation: no guess
        return None
    return next((t for t in reversed(ids) if t in turn_ends), None)


class Extender:
    """What requests generated, put in the cache while the server is idle (see the module): the
    newest few token sequences wait; one is filled a layer per ``step``."""

    def __init__(self, prefix: PrefixCache, model: LayerSteps, turn_ends: TurnEnds = (),
                 closing: int | None = None):  # fmt: skip
        self.prefix, self.model, self.turn_ends = prefix, model, turn_ends
        self.closing = closing  # the token a chat template ends an answer with
        self.waiting: deque[list[int]] = deque(maxlen=4)
        self.current: Generator[None, None, Chunked] | None = None

    def add(self, ids: list[int]) -> None:
        """Queue ``ids`` (a prompt and what one row generated). An answer cut short (by its
        token budget) gets the template's closing token: the next turn resends it closed, and
        its last chunk is then whole (else the next turn computes the whole answer again)."""
        if ids and ids[-1] not in self.turn_ends and self.closing is not None:
            ids = [*ids, self.closing]
        if self.prefix.max_bytes > 0 and ids not in self.waiting:
            self.waiting.append(ids)

    def step(self) -> bool:
        """One layer of the filling; False when there is nothing to fill."""
        while self.current is None:
            if not self.waiting:
                return False
            ids = self.waiting.pop()  # the newest first: the likeliest next turn
            self.current = prefill_chunks(self.model, ids, self.prefix, self.turn_ends,
                                          whole_only=True)  # fmt: skip
        try:
            next(self.current)
        except StopIteration:
            self.current = None
        return True

    def reset(self) -> None:
        self.waiting.clear()
        self.current = None

"""The prefix cache (``prefix_cache.py``): prompts that start like an earlier one reuse its
prefilled blocks, and their outputs keep every bit of what a fresh prefill gives."""

from __future__ import annotations

import random

from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.prefix_cache import (
    BLOCK,
    HOT_KEEP,
    Extender,
    PrefixCache,
    chain_keys,
    chunk_ends,
    closing_token,
    complete,
    final_pass,
    reusable,
)
from mlx_entropix.events import METRIC_NAMES
from mlx_entropix.models.llama import run_steps

import mlx.core as mx
import pytest
from conftest import drain
from mlx_lm.models.cache import KVCache

BIG = 2**30  # a bound no test reaches


def _ids(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(100, 40000) for _ in range(n)]


HISTORY = _ids(300, 0)  # two whole blocks and a partial one


def _serve(decoder: BatchDecoder, ids: list[int], rows=(("entropix", 1),), n: int = 4, **kw):
    req = decoder.submit(ids, list(rows), max_tokens=n, **kw)
    return [item for item in decoder.pull(req) if item is not None]


def _bits(events) -> list:
    """Everything a client sees of the tokens, exactly (timings aside)."""
    out = []
    for row, e in events:
        if e.type == "token":
            metrics = tuple(getattr(e.metrics, m) for m in METRIC_NAMES)
            top = tuple((t.id, t.logprob) for t in e.top)
            out.append((row, e.id, e.text, e.state, e.action, e.params, metrics, e.logprob, top))
        else:
            out.append((row, e.type, e.text, e.finish_reason, e.generated_tokens))
    return out


def _done(events):
    return [e for _, e in events if e.type == "done"]


@pytest.fixture(scope="module")
def fresh(embedded):
    """Outputs without a prefix cache, memoised per (ids, rows, n)."""
    memo: dict = {}

    def get(ids, rows=(("entropix", 1),), n=4):
        key = (tuple(ids), tuple(rows), n)
        if key not in memo:
            memo[key] = _serve(BatchDecoder(embedded), ids, rows, n)
        return memo[key]

    return get


def test_a_hit_reuses_exactly_the_whole_cached_blocks_and_changes_no_bit(embedded, fresh):
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefix_cache=cache)
    first = _serve(decoder, HISTORY)
    assert _bits(first) == _bits(fresh(HISTORY))  # a miss: the same as without a cache
    assert (cache.hits, cache.misses, len(cache.blocks)) == (0, 1, 2)  # whole blocks only
    assert _done(first)[0].cached_tokens == 0

    follow = HISTORY + _ids(40, 1)  # the conversation goes on
    got = _serve(decoder, follow, rows=(("entropix", 1), ("normal", 2)))
    assert _bits(got) == _bits(fresh(follow, rows=(("entropix", 1), ("normal", 2))))
    assert [d.cached_tokens for d in _done(got)] == [256, 256]
    # its rate counts the 84 tokens prefilled, not the 340 (it claimed ~4x the speed)
    done = _done(got)[0]
    assert done.prefill_tok_s * done.ttft_s == pytest.approx(len(follow) - 256, rel=0.05)
    assert (cache.hits, cache.cached_tokens) == (1, 256)
    assert len(cache.blocks) == 2  # 340 tokens: still two whole blocks

    # sharing only part of block 1: block 0 is reused, block 1 computed again
    partial = HISTORY[:200] + _ids(30, 2)
    got = _serve(decoder, partial)
    assert _done(got)[0].cached_tokens == 128
    assert _bits(got) == _bits(fresh(partial))

    # a prompt that is exactly the cached blocks: its last block is computed (its logits)
    exact = HISTORY[:256]
    got = _serve(decoder, exact)
    assert _done(got)[0].cached_tokens == 128 == reusable(exact)
    assert _bits(got) == _bits(fresh(exact))
    assert (cache.hits, cache.misses, cache.cached_tokens) == (3, 1, 512)
    short = _ids(40, 9)  # prefilled in the short prompts' batch: never from the cache
    assert _bits(_serve(decoder, short)) == _bits(fresh(short))
    assert (cache.hits, cache.misses) == (3, 2)


def test_what_a_request_generated_is_cached_while_idle(embedded, fresh):
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefix_cache=cache)
    prompt = _ids(200, 3)
    events = _serve(decoder, prompt, rows=(("greedy", 0),), n=64)
    generated = [e.id for _, e in events if e.type == "token"]
    assert len(cache.blocks) == 1
    steps = 0
    while decoder.idle_step():
        steps += 1
    # the answer as the next turn resends it: closed by the end-of-turn token (a cut one by
    # the filling), whose chunk is then whole
    ends = frozenset(embedded.tokenizer.eos_token_ids)
    filled = (
        generated
        if generated[-1] in ends
        else [*generated, closing_token(embedded.tokenizer, ends)]
    )
    filled = prompt + filled
    assert len(cache.blocks) == complete(filled, chunk_ends(filled, ends), ends) == 3
    assert steps > 0
    nxt = prompt + generated + _ids(20, 4)
    nxt = nxt if len(nxt) > 2 * BLOCK else nxt + _ids(2 * BLOCK + 1 - len(nxt), 5)
    got = _serve(decoder, nxt)
    assert _done(got)[0].cached_tokens == 2 * BLOCK
    assert _bits(got) == _bits(fresh(nxt))


def test_concurrent_requests_sharing_a_prefix_are_each_served_as_alone(embedded, fresh):
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefix_cache=cache)
    prompts = [HISTORY + _ids(10 * (k + 1), 10 + k) for k in range(3)]
    pulls = {k: decoder.pull(decoder.submit(p, [("entropix", k)], max_tokens=4))
             for k, p in enumerate(prompts)}  # fmt: skip
    got: dict[int, list] = {k: [] for k in pulls}
    drain(pulls, got)
    for k, p in enumerate(prompts):
        assert _bits(got[k]) == _bits(fresh(p, rows=(("entropix", k),)))
    # the first prefill filled the blocks the others then found (shortest first, one by one)
    assert sorted(d.cached_tokens for k in got for d in _done(got[k])) == [0, 256, 256]
    assert len(cache.blocks) == 2


def _reference_blocks(model, ids: list[int]) -> list[list[tuple[mx.array, mx.array]]]:
    cache = model.make_cache()
    for at in range(0, len(ids), BLOCK):
        run_steps(model.layer_steps(mx.array(ids[at : at + BLOCK])[None], cache))
    spans = [slice(b * BLOCK, (b + 1) * BLOCK) for b in range(len(ids) // BLOCK)]
    return [[(c.keys[0, :, s], c.values[0, :, s]) for c in cache] for s in spans]


def test_a_cancelled_prefill_leaves_no_half_written_block(embedded, fresh):
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefill_slice_s=0.0, prefix_cache=cache)  # a layer a tick
    ids = _ids(3 * BLOCK + 20, 6)
    layers = len(embedded.model.layers)
    calls = {"n": 0}

    def should_stop() -> bool:  # asked once or twice per tick: stops inside the second chunk
        calls["n"] += 1
        return calls["n"] > 3 * layers

    events = _serve(decoder, ids, should_stop=should_stop)
    assert _done(events)[0].finish_reason == "cancelled"
    assert len(cache.blocks) == 1  # the first chunk, all of its layers; nothing of the second
    reference = _reference_blocks(embedded.model, ids)
    key = chain_keys(ids, chunk_ends(ids)[:1])[0]
    for (k, v), (rk, rv) in zip(cache.blocks[key].kv, reference[0], strict=True):
        assert mx.array_equal(k, rk).item() and mx.array_equal(v, rv).item()
    got = _serve(decoder, ids)  # served in full now, from the one block
    assert _done(got)[0].cached_tokens == BLOCK
    assert _bits(got) == _bits(fresh(ids))
    # and every block the cache now holds is what a fresh prefill computes
    for b, key in enumerate(chain_keys(ids, chunk_ends(ids)[: len(reference)])):
        for (k, v), (rk, rv) in zip(cache.blocks[key].kv, reference[b], strict=True):
            assert mx.array_equal(k, rk).item() and mx.array_equal(v, rv).item()


# ---------------------------------------------------------------- the bookkeeping, no model
def _fake_cache(n: int, layers: int = 2) -> list[KVCache]:
    caches = []
    for layer in range(layers):
        c = KVCache()
        c.keys = mx.full((1, 1, n, 4), float(layer))
        c.values = mx.full((1, 1, n, 4), -float(layer))
        c.offset = n
        caches.append(c)
    return caches


BLOCK_BYTES = 2 * 2 * BLOCK * 4 * 4  # layers x (k, v) x positions x dim x float32


def _has(cache: PrefixCache, ids: list[int]) -> int:
    """Tokens of ``ids`` (whole chunks) the cache holds, without counting a lookup."""
    ends = chunk_ends(ids)
    found = len(cache.lookup(ids, ends, count=False))
    return ends[found - 1] if found else 0


def test_eviction_keeps_the_bound_least_recently_used_leaf_first():
    cache = PrefixCache(int(2.5 * BLOCK_BYTES))
    a, b = _ids(3 * BLOCK, 20), _ids(3 * BLOCK, 21)
    ea, eb = chunk_ends(a), chunk_ends(b)
    fake = _fake_cache(3 * BLOCK)
    assert cache.insert(a, ea, fake, 0) and cache.insert(a, ea, fake, 1)
    assert cache.nbytes == 2 * BLOCK_BYTES
    assert not cache.insert(a, ea, fake, 2)  # no room but for its own ancestors
    assert cache.nbytes <= cache.max_bytes and len(cache.blocks) == 2
    # b's block 0 evicts a's leaf (block 1), not block 0 (a's block 1 depends on it)
    assert cache.insert(b, eb, fake, 0)
    assert cache.nbytes <= cache.max_bytes and cache.evictions == 1
    assert _has(cache, a) == BLOCK  # a's block 0 is still there
    cache.lookup(a, ea[:1])  # a used again: b's block is now the least recently used
    assert cache.insert(a, ea, fake, 1) and cache.evictions == 2
    assert _has(cache, b) == 0 and _has(cache, a) == 2 * BLOCK
    # a block without its parent is never kept; a bound of 0 keeps nothing
    assert not cache.insert(b, eb, fake, 1)
    off = PrefixCache(0)
    assert not off.insert(a, ea, fake, 0) and off.nbytes == 0


def test_the_last_prefill_buffers_are_handed_to_the_next_prefill_that_starts_with_them():
    cache = PrefixCache(int(2.5 * BLOCK_BYTES))
    a, b = _ids(BLOCK, 22), _ids(BLOCK, 23)
    fake = _fake_cache(BLOCK)  # 2 layers: one block's bytes
    cache.keep_hot(a, fake)
    assert cache.nbytes == BLOCK_BYTES and cache.info()["hot_tokens"] == [BLOCK]
    assert cache.take_hot(b, 10) is None  # another prefix
    assert cache.take_hot(a, BLOCK + 1) is None  # longer than what it holds
    got = cache.take_hot(a + [5], 100)  # a prompt that starts with 100 of its tokens
    assert got is not None and [c.offset for c in got] == [100, 100]
    assert got[1].keys is fake[1].keys  # the buffers themselves: no copy
    assert cache.hot == [] and cache.nbytes == 0  # handed over: out of the cache
    # several conversations: each finds its own; the oldest make way past HOT_KEEP
    many = PrefixCache(BIG)
    for i in range(HOT_KEEP + 1):
        many.keep_hot(_ids(8, 40 + i), _fake_cache(8))
    assert len(many.hot) == HOT_KEEP and many.take_hot(_ids(8, 40), 8) is None  # the oldest
    assert many.take_hot(_ids(8, 41), 8) is not None and len(many.hot) == HOT_KEEP - 1
    # counted in the bound, least recently used out first, blocks and kept buffers alike
    cache.keep_hot(a, fake)
    ea = chunk_ends(a + a)
    assert cache.insert(a + a, ea, _fake_cache(2 * BLOCK), 0)
    assert cache.insert(a + a, ea, _fake_cache(2 * BLOCK), 1)  # the older kept one makes way
    assert cache.hot == [] and cache.nbytes == 2 * BLOCK_BYTES and cache.evictions == 0
    cache.keep_hot(b, fake)  # newer than the blocks: the least recently used leaf makes way
    assert cache.info()["hot_tokens"] == [BLOCK] and cache.evictions == 1
    assert cache.nbytes == 2 * BLOCK_BYTES <= cache.max_bytes and _has(cache, a + a) == BLOCK
    small = PrefixCache(BLOCK_BYTES // 2)
    small.keep_hot(b, fake)  # larger than the bound: not kept
    assert small.hot == [] and small.nbytes == 0


def test_chunks_end_at_turn_ends_and_keys_name_the_whole_prefix():
    a = _ids(2 * BLOCK, 30)
    b = a[:BLOCK] + _ids(BLOCK, 31)
    c = _ids(BLOCK, 32) + a[BLOCK:]  # same second block, other first block
    ka, kb, kc = (chain_keys(x, chunk_ends(x)) for x in (a, b, c))
    assert ka[0] == kb[0] and ka[1] != kb[1] and ka[1] != kc[1]
    assert [reusable(_ids(n, 33)) for n in (1, 128, 129, 256, 257)] == [0, 0, 128, 128, 256]
    end = 7  # an end-of-turn token: a chunk ends right after it
    ids = _ids(10, 34) + [end] + _ids(300, 35)
    assert chunk_ends(ids, {end}) == [11, 139, 267, 311]
    assert chunk_ends(ids[:11], {end}) == [11]  # a prefix's chunks are the first chunks
    assert reusable(ids[:150], {end}) == 139 and reusable(ids[:11], {end}) == 0
    # a short last chunk after a turn end is computed with that turn in one pass: a follow-up's
    # new message and its turn header cost one pass over the weights, on or off the cache
    assert reusable(ids[:12], {end}) == 0 and final_pass([11, 12]) == 0
    turns = _ids(200, 36) + [end] + _ids(5, 37)
    assert chunk_ends(turns, {end}) == [128, 201, 206] and reusable(turns, {end}) == 128
    assert final_pass([128, 256, 300]) == 2 and final_pass([128]) == 0


def test_the_next_turn_reuses_the_history_up_to_the_answer_end(embedded, fresh):
    """A chat: the follow-up prefills only its new message (chunks end at turn ends), with
    every bit of a fresh prefill."""
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefix_cache=cache)
    tok = embedded.tokenizer
    history = [{"role": "system", "content": "Be brief. " * 30},
               {"role": "user", "content": "Tell me about rivers. " * 20}]  # fmt: skip
    prompt = tok.apply_chat_template(history)
    events = _serve(decoder, prompt, rows=(("greedy", 0),), n=40)
    done = _done(events)[0]
    while decoder.idle_step():
        pass
    turn = [*history, {"role": "assistant", "content": done.text},
            {"role": "user", "content": "Shorter."}]  # fmt: skip
    ids = tok.apply_chat_template(turn)
    served = prompt + [e.id for _, e in events if e.type == "token"]
    held_before = max(cache.info()["hot_tokens"])  # the filling's buffers: to the answer's end
    got = _serve(decoder, ids, rows=(("entropix", 4),))
    assert _bits(got) == _bits(fresh(ids, rows=(("entropix", 4),)))  # from them: same bits
    cached = _done(got)[0].cached_tokens
    ends = set(tok.eos_token_ids)
    if done.finish_reason == "stop" and ids[len(served)] in ends:
        served.append(ids[len(served)])  # the end-of-turn token it generated last
    elif done.finish_reason == "length":  # cut: the filling closed it as the template does
        served.append(closing_token(tok, ends))
    pairs = enumerate(zip(ids, served, strict=False))
    common = next((i for i, (a, b) in pairs if a != b), min(len(ids), len(served)))
    held = chunk_ends(served, ends)[: complete(served, chunk_ends(served, ends), ends)]
    upto = max((e for e in held if e <= common), default=0)  # what the cache holds of ids
    chunks = chunk_ends(ids, ends)
    assert cached == max((e for e in chunks[: final_pass(chunks)] if e <= upto), default=0)
    assert cached > len(prompt) // 2
    if common == len(served):
        assert cached == len(served) == reusable(ids, ends)  # the answer and its end too
        assert held_before >= cached  # the follow-up started from the kept buffers
    assert cache.info()["hot_tokens"][0] == reusable(ids, ends)  # now its own, first


def test_an_answer_cut_by_its_budget_is_filled_closed(embedded):
    """The next turn resends a cut answer closed by the template's end-of-turn token: the
    filling adds it, so the answer's last chunk is whole and cached."""
    ends = frozenset(embedded.tokenizer.eos_token_ids)
    closing = closing_token(embedded.tokenizer, ends)
    turn = embedded.tokenizer.apply_chat_template([{"role": "assistant", "content": "x"}], False)
    assert closing in ends and closing in turn
    ext = Extender(PrefixCache(BIG), embedded.model, ends, closing=closing)
    ext.add([5, 6, 7])  # cut short
    ext.add([5, 6, closing])  # ended by itself
    assert list(ext.waiting) == [[5, 6, 7, closing], [5, 6, closing]]
    assert closing_token(object(), ends) is None  # no template: no guess


def test_a_fork_request_reuses_and_fills_the_cache_with_the_same_bits(embedded, fresh):
    """Fork mode's branches are rows of the shared batch, copies of its prompt's keys: a hit
    changes none of its bits, and its kept answer is cached like any other (the README said
    fork requests neither used nor filled the cache)."""
    cache = PrefixCache(BIG)
    decoder = BatchDecoder(embedded, prefix_cache=cache)
    fork = (("fork", 0),)

    def bits(events):  # the fork event whole, the tokens and done as everywhere
        forks = [e.model_dump() for _, e in events if e.type == "fork"]
        return forks, _bits([(r, e) for r, e in events if e.type != "fork"])

    first = _serve(decoder, HISTORY, rows=fork, n=6)
    assert bits(first) == bits(fresh(HISTORY, rows=fork, n=6))
    follow = HISTORY + _ids(20, 7)
    got = _serve(decoder, follow, rows=fork, n=6)
    assert _done(got)[0].cached_tokens == 2 * BLOCK
    assert bits(got) == bits(fresh(follow, rows=fork, n=6)) and bits(got)[0]
    blocks = len(cache.blocks)
    while decoder.idle_step():
        pass
    assert len(cache.blocks) > blocks  # its answer, filled while idle


def test_an_answer_with_hidden_sampled_rows_is_cached_for_the_next_turn(embedded):
    """confidence_samples: the hidden rows are cut once the answer is done (agreement.py), which
    ends the request as cancelled; its answer (ended by itself) was not filled then."""
    from mlx_entropix.engine.generate import generate_rows

    tok = embedded.tokenizer
    ids = tok.apply_chat_template([{"role": "system", "content": "Be brief. " * 40},
                                   {"role": "user", "content": "What is 2+2?"}])  # fmt: skip
    filled = {}
    for k in (0, 4):
        decoder = BatchDecoder(embedded, prefix_cache=PrefixCache(BIG))
        items = list(generate_rows(embedded, ids, modes=["greedy"], seeds=[0], max_tokens=24,
                                   decoder=decoder, confidence_samples=k))  # fmt: skip
        while decoder.idle_step():
            pass
        filled[k] = (items[-1][1].text, len(decoder.prefix_cache.blocks))
    assert filled[4] == filled[0] and filled[0][1] > 1

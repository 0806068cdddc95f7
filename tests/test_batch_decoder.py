"""Continuous batching (``batch.py``): requests joining and leaving one shared batch get,
stream by stream, the events of the same request run alone."""

from __future__ import annotations

from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.generate import generate, prepare_prompt
from mlx_entropix.errors import InvalidRequestError
from mlx_entropix.events import METRIC_NAMES

import pytest
from conftest import BATCH_INVARIANT, drain, pull_round

# (prompt, rows (mode, seed), max_tokens): greedy, a compare pair, seeded sampling, n=2
REQUESTS = [
    ("What is the capital of France?", [("greedy", 1)], 20),
    ("Write a haiku about rain.", [("entropix", 5), ("normal", 5)], 16),
    ("Count to ten.", [("normal", 9)], 12),
    ("Name a colour.", [("entropix", 3), ("entropix", 4)], 10),
]


def _drive(decoder: BatchDecoder, lm, requests, stagger: int = 2):
    """Submit the requests one after another, ``stagger`` rounds apart (each joins a batch
    already decoding), pulling every stream round-robin as the server's worker does."""
    out: dict[int, list] = {i: [] for i in range(len(requests))}
    pulls: dict = {}
    for i, (prompt, rows, n) in enumerate(requests):
        req = decoder.submit(prepare_prompt(lm, prompt, max_tokens=n), rows, max_tokens=n)
        pulls[i] = decoder.pull(req)
        for _ in range(stagger):
            pull_round(pulls, out)
    drain(pulls, out)
    return out


# Where rows are not batch-invariant (``blas.rows_independent``: a product's row depends on the
# rows beside it), the last bits drift through the cache step after step: ~2e-5 in 16 tokens.
TOL = 1e-5 if BATCH_INVARIANT else 1e-4


def _same(got, alone, exact: bool) -> None:
    assert [e.id for e in got] == [e.id for e in alone]
    for g, a in zip(got, alone, strict=True):
        assert (g.state, g.action, g.text) == (a.state, a.action, a.text)
        params, want_params = g.params.model_dump(), a.params.model_dump()
        assert params == (want_params if exact else pytest.approx(want_params, abs=1e-5))
        for name in METRIC_NAMES:
            want = getattr(a.metrics, name)
            close = want if exact or want is None else pytest.approx(want, rel=TOL)  # None: n/a
            assert getattr(g.metrics, name) == close
        assert g.logprob == (a.logprob if exact else pytest.approx(a.logprob, abs=1e-4))


def test_streams_in_a_shared_batch_match_each_request_alone(embedded):
    decoder = BatchDecoder(embedded)
    out = _drive(decoder, embedded, REQUESTS)
    for i, (prompt, rows, n) in enumerate(REQUESTS):
        served_alone = _drive(BatchDecoder(embedded), embedded, [REQUESTS[i]])[0]
        for r, (mode, seed) in enumerate(rows):
            got = [e for row, e in out[i] if row == r]
            alone = [e for row, e in served_alone if row == r]
            tokens = [e for e in got if e.type == "token"]
            _same(tokens, [e for e in alone if e.type == "token"], exact=BATCH_INVARIANT)
            # and what the CLI's engine gives (its own attention kernel): same tokens
            cli = list(generate(embedded, prompt, mode=mode, seed=seed, max_tokens=n))
            _same(tokens, [e for e in cli if e.type == "token"], exact=False)
            done = got[-1]
            assert done.type == "done" and [e.type for e in got].count("done") == 1
            assert (done.text, done.finish_reason, done.seed, done.generated_tokens) == (
                cli[-1].text,
                cli[-1].finish_reason,
                seed,
                cli[-1].generated_tokens,
            )
    # the rows really shared steps: fewer steps than tokens generated
    tokens = sum(1 for i in out for _, e in out[i] if e.type == "token")
    assert decoder.steps < tokens / 2
    assert decoder.requests == [] and decoder.shared.slots == 0


def test_a_cancelled_request_leaves_and_the_others_go_on(embedded):
    decoder = BatchDecoder(embedded)
    stop = {"now": False}
    long = decoder.submit(prepare_prompt(embedded, "Tell me a long story."), [("greedy", 0)],
                          max_tokens=64, should_stop=lambda: stop["now"])  # fmt: skip
    short = decoder.submit(prepare_prompt(embedded, "Count to ten."), [("normal", 9)],
                           max_tokens=12)  # fmt: skip
    pulls = [decoder.pull(long), decoder.pull(short)]
    got: list[list] = [[], []]
    for _ in range(6):
        for k in (0, 1):
            item = next(pulls[k], None)
            if item is not None:
                got[k].append(item[1])
    stop["now"] = True
    for k in (0, 1):
        got[k] += [e for _, e in (x for x in pulls[k] if x is not None)]
    assert got[0][-1].type == "done" and got[0][-1].finish_reason == "cancelled"
    assert got[0][-1].generated_tokens < 64
    alone = list(generate(embedded, "Count to ten.", mode="normal", seed=9, max_tokens=12))
    assert [e.id for e in got[1] if e.type == "token"] == [e.id for e in alone if e.type == "token"]
    assert got[1][-1].finish_reason == alone[-1].finish_reason


def test_a_short_request_is_prefilled_before_a_long_prompt_finishes(embedded):
    """Shortest prompt first, a slice per round: the short request's first token comes while
    the long prompt is still being prefilled."""
    decoder = BatchDecoder(embedded, prefill_slice_s=0.0)  # a layer a round
    long_ids = prepare_prompt(embedded, "word " * 600)
    long = decoder.submit(long_ids, [("greedy", 0)], max_tokens=2)
    decoder.tick()  # the long prompt has started
    short = decoder.submit(prepare_prompt(embedded, "Hi"), [("greedy", 0)], max_tokens=3)
    first = None
    for item in decoder.pull(short):
        if item is not None and item[1].type == "token":
            first = item[1]
            break
    assert first is not None
    assert long.current is None and not long.finished  # still prefilling


def test_a_discarded_request_frees_its_rows(embedded):
    decoder = BatchDecoder(embedded)
    req = decoder.submit(prepare_prompt(embedded, "Hi"), [("greedy", 0)], max_tokens=8)
    pull = decoder.pull(req)
    next(pull)
    pull.close()  # the consumer is gone
    assert decoder.requests == [] and req.finished


def test_fork_and_bad_rows_are_refused(embedded):
    decoder = BatchDecoder(embedded)
    ids = prepare_prompt(embedded, "Hi")
    with pytest.raises(InvalidRequestError, match="fork"):
        decoder.submit(ids, [("fork", 0), ("greedy", 0)])  # alone, it is served
    with pytest.raises(InvalidRequestError, match="unknown mode"):
        decoder.submit(ids, [("nope", 0)])  # type: ignore[list-item]
    with pytest.raises(InvalidRequestError, match="no mode"):
        decoder.submit(ids, [])


def test_a_failing_step_ends_every_request_with_an_error(embedded, monkeypatch):
    decoder = BatchDecoder(embedded)
    a = decoder.submit(prepare_prompt(embedded, "Hi"), [("greedy", 0)], max_tokens=8)
    b = decoder.submit(prepare_prompt(embedded, "Hello"), [("normal", 1), ("greedy", 1)],
                       max_tokens=8)  # fmt: skip
    while a.current is None or b.current is None:
        decoder.tick()

    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(embedded.model, "decode_shared", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        decoder.tick()
    for req in (a, b):
        errors = [e for _, e in req.events if e.type == "error"]
        assert len(errors) == len(req.rows) and "device lost" in errors[0].message
        assert req.finished
    assert decoder.requests == []
    # its consumer leaves: the first step's tokens (out as soon as it was sampled), the errors
    assert [e.type for _, e in decoder.pull(b)] == ["token", "token", "error", "error"]
    monkeypatch.undo()
    c = decoder.submit(prepare_prompt(embedded, "Hi"), [("greedy", 0)], max_tokens=3)
    assert [e.type for _, e in (x for x in decoder.pull(c) if x)][-1] == "done"  # serves again


def test_observing_all_requests_at_once_gives_each_its_own_bits():
    """``observe_requests`` (two calls per step) against ``observe`` per request (two calls
    each), bitwise: requests of 1 to 3 rows, each over its own key count, 1 to 8 rows in all."""
    from mlx_entropix.uncertainty.step import observe, observe_requests

    import mlx.core as mx

    logits = mx.random.normal((8, 1, 49152), key=mx.random.key(1)) * 4
    scores = mx.random.normal((8, 9, 256), key=mx.random.key(2)) * 3
    for sizes in ([1], [2], [1, 1, 1], [3, 1, 2], [1] * 8, [2, 1, 3, 2]):
        keys = [37 + 11 * i for i in range(len(sizes))]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        mine = [scores[a : a + n, :, :k] for a, n, k in zip(starts, sizes, keys, strict=True)]
        rows = logits[: sum(sizes)]
        alone = [observe(rows[a : a + n], s) for a, n, s in zip(starts, sizes, mine, strict=True)]
        got = observe_requests(rows, mine)
        for part, want in zip(got, zip(*alone, strict=True), strict=True):
            assert mx.array_equal(part, mx.concatenate(list(want))).item(), sizes
    one_key = [scores[:1, :, :1], scores[1:2, :, :5]]  # one key: the uncompiled way, as alone
    got = observe_requests(logits[:2], one_key)
    want = [observe(logits[i : i + 1], s) for i, s in enumerate(one_key)]
    assert mx.array_equal(got[1], mx.concatenate([w[1] for w in want])).item()

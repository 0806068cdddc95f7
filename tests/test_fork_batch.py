"""Fork as a strategy of the batch decoder (issue 20): a fork request's branches are rows of
the shared batch, beside everyone else's, and its events are those of the same request served
alone, and those the fork gave over mlx-lm caches (``generate._run``, the second decode path
this replaced; its events recorded in ``tests/data/fork_mlx_lm_path.json`` before it went) up
to the last bits of the values."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.generate import prepare_prompt
from mlx_entropix.errors import InvalidRequestError

import pytest
from conftest import BATCH_INVARIANT, drain, pull_round

PER_REQUEST = {"mode", "top_logprobs"}  # not the sampler's: the request's
TIMES = {"elapsed_s", "ttft_s", "total_s", "prefill_tok_s", "decode_tok_s", "cached_tokens"}
SUM = "What is 17 + 25? Answer with the number only."
# (prompt, config overrides, max_tokens): the default first-token fork, forks at 'exploring'
# tokens too (two forks, the second from a continued row), forks at the answer (a second
# batch of rows from the fork's keys), a wider fork whose kept branch goes on
FORKS = [
    (SUM, {}, 16),
    ("Name a colour.", {"fork_trigger": "both", "fork_branch_tokens": 6, "fork_max_forks": 2}, 20),
    (SUM, {"fork_at_answer": True, "fork_answer_sites": "each", "fork_answer_kind": "numeric",
           "fork_branch_tokens": 12}, 12),
    ("Write a haiku about rain.", {"fork_branches": 4, "fork_branch_tokens": 5}, 10),
]  # fmt: skip


# ``generate._run``'s events for each of FORKS (the embedded model, MKL's strict mode), dumped
# as JSON without the times: the independent path's answer, kept for the comparison below.
MLX_LM_PATH = json.loads((Path(__file__).parent / "data" / "fork_mlx_lm_path.json").read_text())


def _serve(lm, requests, stagger: int = 1) -> tuple[list[list], BatchDecoder]:
    """Each request (prompt, overrides, max_tokens; mode fork, seed 7) submitted to one
    decoder, ``stagger`` rounds apart, pulled round-robin as the server's worker does."""
    decoder, out, pulls = BatchDecoder(lm), {i: [] for i in range(len(requests))}, {}
    for i, (prompt, over, n) in enumerate(requests):
        ids = prepare_prompt(lm, prompt, max_tokens=n)
        mode, top = over.get("mode", "fork"), over.get("top_logprobs", 2)
        cfg = lm.default_config.merged({k: v for k, v in over.items() if k not in PER_REQUEST})
        req = decoder.submit(ids, [(mode, 7)], config=cfg, max_tokens=n, top_logprobs=top)
        pulls[i] = decoder.pull(req)
        for _ in range(stagger):
            pull_round(pulls, out)
    drain(pulls, out)
    return [[e for _, e in out[i]] for i in range(len(requests))], decoder


def _dumped(events: list) -> list[dict]:
    return [e.model_dump(exclude=TIMES) for e in events]


def _close(got, want, path: str = "") -> None:
    """Equal, but floats within 1e-3 (the last bits of a different attention kernel)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, abs=1e-3), path
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


@pytest.mark.parametrize("case", FORKS, ids=lambda c: "-".join(c[1]) or "default")
def test_a_fork_in_the_batch_gives_the_events_of_the_mlx_lm_path(embedded, case):
    """Same tokens, branches, answers, choice and work; values equal but for the last bits
    (the decoder's shared-cache attention against mlx-lm's cache)."""
    prompt, over, n = case
    (served,), decoder = _serve(embedded, [case])
    [recorded] = [r for r in MLX_LM_PATH if (r["prompt"], r["overrides"], r["max_tokens"]) == case]
    assert [e.type for e in served].count("fork") >= 1 and served[-1].type == "done"
    _close([e.model_dump(mode="json", exclude=TIMES) for e in served], recorded["events"])
    assert decoder.requests == [] and decoder.shared.slots == 0  # every branch's slot freed


def test_four_fork_requests_in_one_batch_are_each_as_served_alone(embedded):
    """Four fork requests (and a greedy one) joining one batch a round apart: each stream
    gives the events it gives alone (bitwise where the BLAS is batch-invariant), and the
    branches of all of them shared the steps."""
    requests = [*FORKS, ("Count to ten.", {"mode": "greedy"}, 12)]
    together, decoder = _serve(embedded, requests)
    work = 0
    for i, request in enumerate(requests):
        (alone,), _ = _serve(embedded, [request])
        got = together[i]
        assert [e.id for e in got if e.type == "token"] == [
            e.id for e in alone if e.type == "token"
        ]
        if BATCH_INVARIANT:
            assert _dumped(got) == _dumped(alone)
        else:
            _close(_dumped(got), _dumped(alone))
        work += getattr(got[-1], "tokens_computed", None) or got[-1].generated_tokens
    assert decoder.steps < work / 2  # rows of several requests in one step
    assert decoder.requests == [] and decoder.shared.slots == 0


def test_a_fork_request_that_leaves_during_its_fork_frees_every_branch_row(embedded):
    decoder = BatchDecoder(embedded)
    other = decoder.submit(prepare_prompt(embedded, "Count to ten."), [("greedy", 0)],
                           max_tokens=24)  # fmt: skip
    ids = prepare_prompt(embedded, SUM)
    fork = decoder.submit(ids, [("fork", 0)], max_tokens=24)
    pull = decoder.pull(fork)
    while fork.branches is None:
        next(pull)
        decoder.tick()
    assert len(fork.slots) == embedded.default_config.fork_branches  # a row per branch
    pull.close()  # the consumer is gone mid-fork
    assert decoder.requests == [other]
    list(decoder.pull(other))
    assert decoder.shared.slots == 0


def test_fork_runs_alone_in_its_request(embedded):
    decoder = BatchDecoder(embedded)
    with pytest.raises(InvalidRequestError, match="fork mode runs alone"):
        decoder.submit(prepare_prompt(embedded, "Hi"), [("fork", 0), ("greedy", 0)])


def test_requests_with_different_alternatives_share_a_step(embedded):
    """Rows packing different numbers of alternatives (top_logprobs 5 and 0, a fork's
    branches) in one step: each gets its own (the narrower padded, not a failed step)."""
    requests = [("Hi", {"mode": "greedy", "top_logprobs": 5}, 4),
                ("Hello", {"mode": "greedy", "top_logprobs": 0}, 4)]  # fmt: skip
    got, decoder = _serve(embedded, requests, stagger=0)
    assert decoder.steps >= 3  # both in every step
    assert [len(e.top) for e in got[0] if e.type == "token"] == [5] * 4
    assert [len(e.top) for e in got[1] if e.type == "token"] == [0] * 4

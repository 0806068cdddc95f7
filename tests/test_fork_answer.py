"""Forks at the answer (``fork_answer.py``): where the uncertainty opens one, on constructed
metrics; and a run on the embedded model whose answer-fork branches are what greedy decoding
says after their parents' tokens and the swapped-in one."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.fork_answer import answer_fork_site, answer_fork_sites
from mlx_entropix.engine.generate import generate

EOS = {0}
# "So 7 x 8 = 56": tokens 0..7, the answer span "5", "6" is [6, 8)
OWN = [(1, "So"), (2, " 7"), (3, " x"), (4, " 8"), (5, " ="), (6, " 5"), (7, "6"), (8, ".")]


def _candidates(extra: dict[int, list[tuple[int, str]]] | None = None) -> list[list]:
    """Each token's own id first, then two ordinary alternatives (ids 50+)."""
    out = [[own, (50 + 2 * p, " 4"), (51 + 2 * p, " 9")] for p, own in enumerate(OWN)]
    for p, cands in (extra or {}).items():
        out[p] = [OWN[p], *cands]
    return out


def site(signal, window=range(5, 8), candidates=None, min_value=0.0, n_alt=1):
    return answer_fork_site(window, signal, OWN, candidates or _candidates(), EOS, min_value,
                            n_alt)  # fmt: skip


def test_an_answer_fork_opens_on_the_most_uncertain_token_of_the_span_or_the_one_before():
    calm = [0.1] * 8
    inside = calm[:6] + [4.0] + calm[7:]  # the first digit's distribution is uncertain
    assert site(inside) == (6, [62])
    assert site(inside, n_alt=2) == (6, [62, 63])
    before = calm[:5] + [5.0, 1.0, 0.1]  # the token before the span is the most uncertain
    assert site(before) == (5, [60])
    assert answer_fork_sites((6, 8), "max", before, OWN, _candidates(), EOS, 0.0, 1) == [(5, [60])]
    assert answer_fork_sites((6, 8), "span", before, OWN, _candidates(), EOS, 0.0, 1) == [(6, [62])]
    both = answer_fork_sites((6, 8), "each", before, OWN, _candidates(), EOS, 0.0, 1)
    assert both == [(5, [60]), (6, [62])]
    # outside the window nothing counts, however uncertain
    early = [9.0, 9.0, 9.0] + calm[3:]
    assert site(early) == (5, [60])  # the first of equal signals
    assert site(early, min_value=1.0) is None  # below the threshold: no fork


def test_an_answer_fork_never_opens_on_a_line_break_or_eos_candidate():
    signal = [0.1] * 5 + [2.0, 3.0, 0.5]
    # the most uncertain token's alternatives are EOS and line breaks: the next best site
    only_breaks = {6: [(0, "<eos>"), (90, "\n"), (91, " \n\n")]}
    assert site(signal, candidates=_candidates(only_breaks)) == (5, [60])
    # a mixed list keeps the ordinary candidates only, in their order
    mixed = {6: [(0, "<eos>"), (90, "\n"), (92, " 4")]}
    assert site(signal, candidates=_candidates(mixed), n_alt=3) == (6, [92])
    # a line-break token is no site even when it is the most uncertain
    own = [*OWN[:6], (99, "\n"), OWN[7]]
    cands = _candidates()
    cands[6] = [own[6], (62, " 4")]
    assert answer_fork_site(range(5, 8), signal, own, cands, EOS, 0.0, 1) == (5, [60])
    # the first token is the first-token fork's, never an answer fork's
    assert answer_fork_site(range(-1, 2), [9.0, 0.1], OWN, _candidates(), EOS, 0.0, 1) == (
        1,
        [52],
    )
    assert answer_fork_site(range(0, 1), [9.0], OWN, _candidates(), EOS, 0.0, 1) is None


def test_answer_fork_branches_continue_their_parents_as_greedy_would(embedded):
    prompt = "What is 17 + 25? Answer with the number only."
    cfg = embedded.default_config.merged(
        {"fork_at_answer": True, "fork_answer_sites": "each", "fork_answer_kind": "numeric",
         "fork_branch_tokens": 16}
    )  # fmt: skip
    events = list(generate(embedded, prompt, mode="fork", config=cfg, max_tokens=16,
                           top_logprobs=2))  # fmt: skip
    fork = next(e for e in events if e.type == "fork")
    first = [b for b in fork.branches if b.parent is None]
    new = [b for b in fork.branches if b.parent is not None]
    assert len(first) == cfg.fork_branches and new
    # the work is exactly what all the branches decoded (an answer fork re-reads its prefix)
    assert fork.tokens_computed == sum(b.tokens - 1 for b in fork.branches)
    ids = embedded.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
    for b in new:
        parent = fork.branches[b.parent]
        assert 1 <= b.at < parent.tokens and b.signal is not None
        assert b.token.id != 0 and "\n" not in b.token.text
        lo, _ = parent.span
        assert lo - 1 <= b.at  # inside or just before the parent's answer
        # what greedy says after the parent's tokens before the fork and the new token
        head = [parent.token.id] + _greedy_ids(embedded, ids + [parent.token.id], b.at - 1)
        rest = _greedy_text(embedded, ids + head + [b.token.id], b.tokens - b.at - 1)
        assert b.text.startswith(_decode(embedded, head + [b.token.id]))
        assert b.text.endswith(rest)
    text = "".join(e.text for e in events if e.type == "token")
    assert text == fork.branches[fork.kept].text == events[-1].text


def _greedy_ids(lm, ids: list[int], n: int) -> list[int]:
    if n <= 0:
        return []
    return [e.id for e in generate(lm, ids, mode="greedy", max_tokens=n) if e.type == "token"]


def _greedy_text(lm, ids: list[int], n: int) -> str:
    if n <= 0:
        return ""
    done = list(generate(lm, ids, mode="greedy", max_tokens=n))[-1]
    return done.text


def _decode(lm, ids: list[int]) -> str:
    return lm.tokenizer.decode(ids)


class _Tok:
    """Token i reads PIECES[i]; token 0 is the end of sequence."""

    PIECES = ["<eos>", "It", " is", " Paris", ".", " So", " the", " answer", ":", "\n", "##"]
    eos_token_ids = {0}

    def detokenizer(self):
        pieces = self.PIECES

        class D:
            def add_token(self, i: int) -> str:
                return pieces[i]

        return D()


def _v(token: int) -> list[float]:
    return [float(token)] + [0.0] * 30


CUE = [5, 6, 7]  # " So the answer"


def test_a_branch_without_a_reader_reads_its_answer_after_the_cue():
    from mlx_entropix.engine.branches import Branch
    from mlx_entropix.engine.stream import StopMatcher

    b = Branch(_Tok(), StopMatcher(["##"]), limit=8, cue=CUE)
    assert [b.take(_v(t), 0.5) for t in (1, 2, 3)] == [1, 2, 3]  # "It is Paris": feed on
    # EOS ends the branch: the row feeds the cue (not the EOS); what the model says meanwhile
    # is the cue's, not read
    assert b.take(_v(0), 0.5) == 5 and b.end == "stop" and not b.active
    assert [b.take(_v(t), 0.5) for t in (9, 9)] == [6, 7]
    assert b.cue_texts == []
    # then the continuation: ":" " Paris" "." (a full stop ends it), with its margins
    assert b.take(_v(8), 0.2) == 8
    assert b.take(_v(3), 0.7) == 3
    assert b.take(_v(4), 0.9) is None
    assert b.cue_answer() == ": Paris." and b.cue_margins == [0.2, 0.7, 0.9]
    assert "".join(b.visible()) == "It is Paris"  # the cue is not the branch's text
    # the budget ended it: its last token is fed first, then the cue; EOS ends the reading
    c = Branch(_Tok(), StopMatcher([]), limit=2, cue=CUE)
    assert c.take(_v(1), 0.5) == 1
    assert c.take(_v(2), 0.5) == 2 and c.end == "length"
    assert [c.take(_v(9), 0.5) for _ in CUE] == CUE
    assert c.take(_v(3), 0.5) == 3 and c.take(_v(0), 0.5) is None
    assert c.cue_answer() == "Paris"
    # a stop string ends it: the cue follows at once; the reading stops at cue_limit tokens
    d = Branch(_Tok(), StopMatcher(["##"]), limit=8, cue=CUE, cue_limit=2)
    assert d.take(_v(10), 0.5) == 5 and d.end == "stop_string"
    assert [d.take(_v(9), 0.5) for _ in CUE[1:]] == CUE[1:]
    assert d.take(_v(2), 0.5) == 2 and d.take(_v(3), 0.5) is None
    assert d.cue_answer() == "is Paris"
    # no cue: an ended branch's row is done
    e = Branch(_Tok(), StopMatcher([]), limit=8)
    assert e.take(_v(1), 0.5) == 1 and e.take(_v(0), 0.5) is None and e.queue is None


def test_without_a_reader_the_answer_is_what_greedy_says_after_the_cue(embedded):
    from mlx_entropix.answers import normalize
    from mlx_entropix.config import PAPER_CUE

    prompt = "What is the capital of France?"
    cfg = embedded.default_config.merged(
        {"fork_branch_tokens": 12, "fork_score": "answer_margin", "fork_answer_cue": PAPER_CUE}
    )
    assert cfg.fork_answer_kind is None and embedded.default_config.fork_answer_cue is None
    events = list(generate(embedded, prompt, mode="fork", config=cfg, max_tokens=12))
    fork = next(e for e in events if e.type == "fork")
    assert all(b.cue is not None for b in fork.branches)
    assert [b.answer for b in fork.branches] == [normalize(b.cue)[:80] or None
                                                 for b in fork.branches]  # fmt: skip
    cue = embedded.tokenizer.encode(" So the answer is")
    assert fork.tokens_computed >= sum(b.tokens - 1 for b in fork.branches) + 3 * len(cue)
    # the kept branch's cue reading is greedy decoding after its tokens and the cue
    ids = embedded.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
    kept = fork.branches[fork.kept]
    said = [e.id for e in events if e.type == "token"]
    after = _greedy_text(embedded, ids + said + cue, cfg.fork_cue_tokens)
    assert after.strip().startswith(kept.cue) and kept.cue
    assert kept.text == events[-1].text
    # a reader (a kind) reads the branch itself: no cue
    numeric = cfg.merged({"fork_answer_kind": "numeric"})
    fork = next(e for e in generate(embedded, prompt, mode="fork", config=numeric,
                                    max_tokens=12) if e.type == "fork")  # fmt: skip
    assert all(b.cue is None for b in fork.branches)


def test_the_cli_marks_an_answer_forks_branch_with_its_parent_and_site():
    from mlx_entropix.cli.terminal import Style, fork_line
    from mlx_entropix.events import ForkBranch, ForkEvent, Metrics, TopLogprob

    def branch(text: str, answer: str, **extra) -> ForkBranch:
        token = TopLogprob(id=1, text=text[:2], logprob=-0.1)
        return ForkBranch(token=token, text=text, tokens=3, score=0.5, answer=answer,
                          kept=False, **extra)  # fmt: skip

    event = ForkEvent(
        mode="fork", index=0, trigger="first", score="margin", kept=0, tokens_computed=9,
        metrics=Metrics(entropy=1.0, varentropy=2.0, attn_entropy=None, attn_varentropy=None,
                        agreement=None, interaction_strength=None),
        branches=[branch("7 x 8 = 56", "56"), branch("7 x 8 = 54", "54", parent=0, at=5,
                                                       signal=3.2)],
    )  # fmt: skip
    line = fork_line(event, Style())
    assert "↳0@5 '7 x 8 = 54'" in line and "↳" not in line.split("|")[0]


def test_the_evaluation_reads_fork_branches_through_the_cue_on_request(embedded):
    from mlx_entropix.eval.harness import Item, engine_generate_fn

    item = Item(0, "2 + 2 = 4\n3 + 5 =", "8", "numeric", format="raw")
    cued = engine_generate_fn(embedded, max_tokens=8, fork_reader=False)(item, "fork", 0)
    assert cued.branches and all(b["cue"] is not None for b in cued.branches)
    read = engine_generate_fn(embedded, max_tokens=8)(item, "fork", 0)
    assert all(b["cue"] is None for b in read.branches)
    off = embedded.default_config.merged({"fork_answer_kind": None})
    plain = list(generate(embedded, [1], mode="fork", config=off, max_tokens=3))
    assert all(b.cue is None for b in next(e for e in plain if e.type == "fork").branches)
    assert [b["text"] for b in read.branches] == [b["text"] for b in cued.branches]


def test_a_kept_branch_that_ended_at_its_budget_goes_on_from_its_own_keys(embedded):
    """With the answer cue, a branch that ended at its budget feeds the cue and reads on; its
    row leaves the batch when its reading ends, possibly while another branch still reads.
    Kept, the generation goes on from that row: its keys must be held until the fork is
    decided (the batch decoder's slots), not those of the fork's row."""
    from mlx_entropix.config import PAPER_CUE
    from mlx_entropix.engine.generate import prepare_prompt

    prompt, n = "What is the capital of France?", 10
    cfg = embedded.default_config.merged(
        {"fork_branch_tokens": 4, "fork_score": "answer_margin", "fork_answer_cue": PAPER_CUE}
    )
    ids = prepare_prompt(embedded, prompt, max_tokens=n)
    events = list(generate(embedded, prompt, mode="fork", config=cfg, max_tokens=n))
    fork = next(e for e in events if e.type == "fork")
    kept = fork.branches[fork.kept]
    # the case in point: kept, ended at its budget, its reading after the cue done first
    assert kept.finish == "length" and kept.cue
    assert any(len(b.cue or "") > len(kept.cue) for b in fork.branches)
    said = [e.id for e in events if e.type == "token"]
    assert kept.tokens < len(said)  # it went on after the fork
    rest = generate(embedded, ids + said[: kept.tokens], mode="greedy",
                    max_tokens=len(said) - kept.tokens, top_logprobs=0)  # fmt: skip
    assert [e.id for e in rest if e.type == "token"] == said[kept.tokens :]

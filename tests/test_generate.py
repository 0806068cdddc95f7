"""The engine on the embedded model: events, reproducibility, stops, cancellation, errors."""

from __future__ import annotations

from dataclasses import replace

from mlx_entropix.config import SamplerConfig
from mlx_entropix.engine.generate import generate, prepare_prompt
from mlx_entropix.errors import InvalidRequestError, PromptTooLongError
from mlx_entropix.events import DoneEvent, TokenEvent

import pytest

QUESTION = "Which number is larger, 9.9 or 9.11?"
OPEN = "Write one surprising word."


def run(lm, prompt=QUESTION, **kw) -> tuple[list[TokenEvent], DoneEvent]:
    events = list(generate(lm, prompt, **kw))
    *tokens, done = events
    assert isinstance(done, DoneEvent)
    assert all(isinstance(e, TokenEvent) for e in tokens)
    return tokens, done


def test_greedy_text_and_event_contract(embedded):
    tokens, done = run(embedded, mode="greedy", max_tokens=18)
    assert done.text.startswith(
        "To solve this problem, we need to find the difference between the two numbers."
    )
    assert "".join(t.text for t in tokens) == done.text
    assert [t.index for t in tokens] == list(range(len(tokens))) == list(range(18))
    assert done.finish_reason == "length" and done.generated_tokens == 18
    assert sum(done.state_counts.values()) == 18 and done.action_counts == {"argmax": 18}
    first = tokens[0]
    assert first.top[0].id == first.id  # greedy picks the top alternative
    assert first.logprob == pytest.approx(first.top[0].logprob)
    assert all(t.top[i].logprob >= t.top[i + 1].logprob for t in tokens for i in range(4))
    assert first.metrics.entropy >= 0 and first.metrics.attn_entropy > 0
    assert done.prompt_tokens == len(prepare_prompt(embedded, QUESTION))
    assert done.ttft_s > 0 and done.decode_tok_s > 0


@pytest.mark.parametrize("mode", ["entropix", "normal", "greedy"])
def test_same_seed_same_tokens(embedded, mode):
    a, _ = run(embedded, OPEN, mode=mode, seed=11, max_tokens=16)
    b, _ = run(embedded, OPEN, mode=mode, seed=11, max_tokens=16)
    assert [t.id for t in a] == [t.id for t in b]


@pytest.mark.parametrize("mode", ["entropix", "normal"])
def test_different_seeds_differ(embedded, mode):
    hot = SamplerConfig(temperature=1.5, top_p=1.0, top_k=0, min_p=0.0)
    runs = {
        tuple(t.id for t in run(embedded, OPEN, mode=mode, seed=s, max_tokens=12, config=hot)[0])
        for s in (1, 2, 3)
    }
    assert len(runs) > 1


def test_seed_is_reported_when_none_given(embedded):
    _, done = run(embedded, OPEN, mode="normal", max_tokens=4)
    again, done2 = run(embedded, OPEN, mode="normal", max_tokens=4, seed=done.seed)
    assert done.seed is not None and done2.text == done.text


def test_clarifying_token_inserted_at_most_once(embedded):
    # Thresholds that make every step "treading": H > -1 and V < 1e9.
    cfg = SamplerConfig(high_ent=-1.0, low_vent=1e9, low_ent=-2.0)
    tokens, done = run(embedded, OPEN, config=cfg, seed=3, max_tokens=8)
    assert all(t.state == "treading" for t in tokens)
    assert [t.action for t in tokens].count("clarify") == 1
    assert tokens[0].action == "clarify" and tokens[0].id == embedded.tokenizer.token_id(" ...")
    assert done.action_counts == {"clarify": 1, "sample": len(tokens) - 1}


def test_stop_string_is_cut_and_excluded(embedded):
    tokens, done = run(embedded, mode="greedy", max_tokens=30, stop=["difference"])
    assert done.finish_reason == "stop_string"
    assert done.text == "To solve this problem, we need to find the "
    assert "".join(t.text for t in tokens) == done.text


def test_stop_string_never_matching_keeps_all_text(embedded):
    tokens, done = run(embedded, mode="greedy", max_tokens=12, stop=["zzzq"])
    plain, ref = run(embedded, mode="greedy", max_tokens=12)
    assert done.text == ref.text == "".join(t.text for t in tokens)


def test_eos_ends_the_turn(embedded):
    _, done = run(embedded, "Say just: yes", mode="greedy", max_tokens=64)
    assert done.finish_reason == "stop" and done.generated_tokens < 64
    assert "<|im_end|>" not in done.text


def test_cancellation_stops_within_a_token(embedded):
    seen = []
    gen = generate(embedded, OPEN, mode="greedy", max_tokens=50, should_stop=lambda: len(seen) >= 3)
    for event in gen:
        seen.append(event)
    assert isinstance(seen[-1], DoneEvent) and seen[-1].finish_reason == "cancelled"
    assert seen[-1].generated_tokens == 3


def test_prompt_errors(embedded):
    with pytest.raises(InvalidRequestError):
        prepare_prompt(embedded, "   ")
    with pytest.raises(InvalidRequestError):
        prepare_prompt(embedded, QUESTION, max_tokens=0)
    with pytest.raises(InvalidRequestError):
        prepare_prompt(embedded, [{"role": "robot", "content": "hi"}])
    with pytest.raises(PromptTooLongError, match="context is 8192 tokens"):
        prepare_prompt(embedded, [1] * 8192)
    with pytest.raises(InvalidRequestError):
        generate(embedded, QUESTION, mode="bogus")  # type: ignore[arg-type]


def test_chat_messages_and_raw_ids_agree(embedded):
    ids = prepare_prompt(embedded, QUESTION, system="Be brief.")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    assert prepare_prompt(embedded, msgs) == ids
    _, a = run(embedded, ids, mode="greedy", max_tokens=6)
    _, b = run(embedded, msgs, mode="greedy", max_tokens=6)
    assert a.text == b.text


def test_generation_stops_at_the_context_end(embedded):
    # A copy that believes its context is 60 tokens: cheap to fill.
    small = replace(embedded, info=replace(embedded.info, context_length=60))
    ids = prepare_prompt(small, QUESTION)
    tokens, done = run(small, ids, mode="greedy", max_tokens=50)
    assert len(ids) + len(tokens) == 60 and done.finish_reason == "length"
    with pytest.raises(PromptTooLongError):
        prepare_prompt(small, list(range(60)))


@pytest.mark.parametrize("mode", ["entropix", "greedy"])
def test_a_single_token(embedded, mode):
    tokens, done = run(embedded, mode=mode, max_tokens=1, seed=0)
    assert len(tokens) == 1 and done.generated_tokens == 1 and done.finish_reason == "length"
    assert done.text == tokens[0].text == "To"


def test_a_cut_in_the_middle_of_a_character_keeps_its_text(embedded):
    """The 21st greedy token here is " \\xe7" (a space and a Chinese character's first byte),
    which the detokenizer holds back: cut there by max_tokens, the space and the cut character
    (as U+FFFD, as mlx-lm's last response) join the last token's event, with and without stop
    strings (the held event's path), instead of being dropped."""
    prompt = "Translate 'cat' to Chinese."
    _, longer = run(embedded, prompt, mode="greedy", max_tokens=24)
    for stop in ((), ("never said",)):
        tokens, done = run(embedded, prompt, mode="greedy", max_tokens=21, stop=stop)
        assert tokens[-1].id == 27709 and done.finish_reason == "length"
        assert "".join(t.text for t in tokens) == done.text
        assert done.text.endswith(" \ufffd") and tokens[-1].text == " \ufffd"
        assert longer.text.startswith(done.text.removesuffix("\ufffd"))

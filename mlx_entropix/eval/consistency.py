"""Self-consistency (Wang et al. 2023): k paths sampled in normal mode as one batch, the
answers extracted with the grader's reader, the majority answer kept. The standard way to spend
k times the compute of one answer, so the peer fork mode is measured against at the same k.

Vote: rows without an answer do not vote; the answer with the most votes wins, ties going to
the answer whose first vote comes first in row order (row 0 first); the response is the first
row that gave the winning answer (row 0 when no row answered).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..engine.agreement import row_seeds
from ..errors import GenerationError


def vote(answers: Sequence[str | None]) -> int:
    """Index of the row whose text stands for the majority answer (see the module docstring)."""
    # most_common sorts stably: equal counts keep the order of their first vote
    counts = Counter(a for a in answers if a is not None)
    return list(answers).index(counts.most_common(1)[0][0]) if counts else 0


def sample_rows(
    lm: Any, prompt: Any, k: int, seed: int, config: Any, max_tokens: int, stop: Sequence[str]
) -> list[Any]:
    """The k rows' ``DoneEvent``s: normal sampling, one batch from one prefill."""
    from ..engine.generate import generate_rows

    dones: list[Any] = [None] * k
    for item in generate_rows(lm, prompt, modes=["normal"] * k, seeds=row_seeds(seed, k),
                              config=config, max_tokens=max_tokens, stop=stop,
                              top_logprobs=0, confidence_samples=0):  # fmt: skip
        if item is not None and item[1].type == "done":
            dones[item[0]] = item[1]
        elif item is not None and item[1].type == "error":  # NaN logits: as ``generate`` does
            raise GenerationError(item[1].message)
    return dones

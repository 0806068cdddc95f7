"""Many generations at once for the benchmarks: every (prompt, config, mode, seed) a row of one
``BatchDecoder`` batch, so a sweep over samplers costs a fraction of running them one by one
(one decode step reads the weights once for all rows; 8 rows ~4x the tokens/s of one here).

Each row's tokens are those ``generate`` gives for the same prompt, config, mode and seed
(``batch.py``), so figures from here and from ``benchmarks/eval.py`` agree.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Mode, SamplerConfig


@dataclass(frozen=True)
class Job:
    """One prompt (token ids) under one sampler, with one row per seed."""

    key: Any  # the caller's label, returned with the results
    ids: list[int]
    cfg: SamplerConfig
    mode: Mode
    seeds: tuple[int, ...]
    stop: tuple[str, ...] = ()


@dataclass
class RowResult:
    """What a benchmark keeps of one generation."""

    key: Any
    seed: int
    text: str = ""
    tokens: int = 0
    logprobs: list[float] = field(default_factory=list)  # raw (T=1) log p of each token
    states: list[str] = field(default_factory=list)
    metrics: list[list[float]] = field(default_factory=list)  # the six metrics per token
    finish_reason: str = ""


def run_jobs(
    lm: Any, jobs: Sequence[Job], *, max_tokens: int, max_rows: int = 24
) -> list[RowResult]:
    """Decode every job's rows, ``max_rows`` rows in flight at most; results in job order,
    then seed order. Jobs join the batch as rows free up (continuous batching)."""
    from tqdm import tqdm

    from ..engine.batch import BatchDecoder

    decoder = BatchDecoder(lm)
    results: list[list[RowResult]] = [[RowResult(j.key, s) for s in j.seeds] for j in jobs]
    pending = list(range(len(jobs)))[::-1]
    live: dict[Any, int] = {}  # BatchRequest -> job index
    with tqdm(total=len(jobs), unit="job", file=sys.stderr, dynamic_ncols=True) as bar:
        while pending or live:
            rows = sum(len(jobs[i].seeds) for i in live.values())
            while pending and (not live or rows + len(jobs[pending[-1]].seeds) <= max(max_rows, 1)):
                i = pending.pop()
                job = jobs[i]
                req = decoder.submit(
                    job.ids, [(job.mode, s) for s in job.seeds], config=job.cfg,
                    max_tokens=max_tokens, stop=job.stop, top_logprobs=0,
                )  # fmt: skip
                live[req] = i
                rows += len(job.seeds)
            decoder.tick()
            for req, i in list(live.items()):
                while req.events:
                    r, event = req.events.popleft()
                    out = results[i][r]
                    if event.type == "token":
                        out.logprobs.append(event.logprob)
                        out.states.append(event.state)
                        out.metrics.append(list(event.metrics.model_dump().values()))
                    elif event.type == "done":
                        out.text, out.tokens = event.text, event.generated_tokens
                        out.finish_reason = event.finish_reason
                    else:
                        raise RuntimeError(event.message)
                if req.finished:
                    del live[req]
                    bar.update(1)
    return [r for rs in results for r in rs]

"""The BLAS's threads by phase (``runtime.device.blas_phase``): all cores for a prefill, one for
a decode step, switched by the engine before each piece of work."""

from __future__ import annotations

import ctypes
import dataclasses

from mlx_entropix.engine.generate import generate
from mlx_entropix.runtime import blas

import pytest


def test_set_threads_sets_and_restores_the_count():
    api = blas._threads_api()
    if api is None:
        pytest.skip("no MKL/OpenBLAS loaded: the bundled BLAS has no thread count to set")
    lib = ctypes.CDLL(blas.preload().path)
    count = getattr(lib, "MKL_Get_Max_Threads", None) or lib.openblas_get_num_threads
    default = api[1]
    try:
        blas.set_threads(1)
        assert count() == 1
        blas.set_threads(None)
        assert count() == default
        blas.set_threads(10_000)  # never above the default (all cores or the user's setting)
        assert count() == default
    finally:
        blas.set_threads(None)


def test_the_engine_prefills_on_all_threads_and_decodes_on_one(embedded):
    """A request's prefill (in chunks) runs after switches to the prefill threads only, and
    every decode step after a switch to one thread."""
    phases: list[bool] = []
    lm = dataclasses.replace(embedded, work_phase=phases.append)
    long = "Tell me about rivers, " + "and more " * 80  # over one chunk
    events = list(generate(lm, long, mode="greedy", max_tokens=5, seed=0))
    assert events[-1].type == "done" and events[-1].generated_tokens == 5
    first_decode = phases.index(False)
    assert first_decode > 0 and all(phases[:first_decode])
    assert not any(phases[first_decode:]) and len(phases) - first_decode >= 4


def test_ranks_on_one_machine_share_its_cores_in_a_prefill(monkeypatch):
    """Under ``mlx.launch`` with several ranks here, a prefill takes its share of the cores."""
    import os

    from mlx_entropix.runtime import device
    from mlx_entropix.runtime.distributed import ranks_here

    import mlx.core as mx

    assert ranks_here(mx.distributed.init()) == 1  # one process: alone on its machine
    asked: list[int | None] = []
    monkeypatch.setattr(device, "backend", lambda: "cpu")
    monkeypatch.setattr(device.blas, "set_threads", asked.append)
    monkeypatch.setattr(device, "_phase", [False])
    monkeypatch.setattr(device, "_sharers", [1])
    device.blas_phase(True)
    device.blas_phase(False)
    device.share_cores(2)
    device.blas_phase(True)
    assert asked == [None, 1, max(1, (os.cpu_count() or 1) // 2)]


def test_strict_mode_is_asked_for_only_where_it_makes_rows_independent(monkeypatch, tmp_path):
    """MKL's strict mode costs a stream ~17%: measured once per machine (in a child process,
    kept in the user's cache) and set only where it makes a product's rows batch-invariant."""
    import json
    import os

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MKL_CBWR", raising=False)
    if blas.preload().name != "mkl":
        assert not blas.strict_mode_works()  # only MKL reads the mode
        return
    measured = blas.strict_mode_works()
    kept = tmp_path / "mlx-entropix" / "mkl_strict_mode.json"
    saved = json.loads(kept.read_text())
    assert list(saved.values()) == [measured]
    key = next(iter(saved))
    for works in (False, True):  # the kept answer decides, whichever it is
        kept.write_text(json.dumps({key: works}))
        assert blas.strict_mode_works() is works
        monkeypatch.delenv("MKL_CBWR", raising=False)
        blas.batch_invariant()
        assert ("MKL_CBWR" in os.environ) is works

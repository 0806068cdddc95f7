"""One decode loop (issue 20): the CLI's, the harness's and the server's requests go through the
same ``BatchDecoder``, so the same request gives the same bits from every front end; and the
decode step is called from a known, short list of places."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.generate import generate_rows, prepare_prompt
from mlx_entropix.engine.prefix_cache import PrefixCache
from mlx_entropix.server import ServerSettings
from mlx_entropix.server.engine import Engine, generation_work
from mlx_entropix.server.worker import IDLE

import httpx
import pytest
from conftest import BATCH_INVARIANT

from tests._live_server import LiveServer, read_sse
from tests.test_cli import cli, events_of

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mlx_entropix"
TIMES = {"elapsed_s", "ttft_s", "total_s", "prefill_tok_s", "decode_tok_s", "cached_tokens"}
LONG = "Rivers carry water from the hills to the sea, and towns grow on their banks. " * 12
# (prompt, modes, seed, max_tokens): one row, a compare pair, a prompt over one chunk
CASES = [
    ("Name a colour.", ["entropix"], 3, 10),
    ("Write a haiku about rain.", ["entropix", "normal"], 5, 8),
    (LONG + "Summarise.", ["greedy"], 1, 6),
]


def served(engine: Engine, ids: list[int], modes: list[str], seed: int, n: int) -> list:
    """A request as the server's job runs it (``generation_work``, without HTTP)."""
    work = generation_work(ids, modes, config=engine.config, max_tokens=n, seed=seed, stop=(),
                           top_logprobs=5)  # fmt: skip
    return [item for item in work(engine, lambda: False) if item is not IDLE]


def dumped(items: list) -> list:
    return [(r, e.model_dump(exclude=TIMES)) for r, e in items]


@pytest.fixture(scope="module")
def server_engine(embedded):
    """The server's engine: one shared decoder with a prefix cache."""
    decoder = BatchDecoder(embedded, prefix_cache=PrefixCache(64 * 2**20))
    return Engine(lm=embedded, checker=embedded, config=embedded.default_config, runtime={},
                  model_id="embedded", token_bytes=None, decoder=decoder)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'+'.join(c[1])}-{len(c[0])}")
def test_the_cli_and_the_server_give_the_same_bits(embedded, server_engine, case):
    """Tokens, texts, decisions, metrics, log-probs and alternatives: equal, not close. Served
    twice (the second time a long prompt's first blocks come from the prefix cache)."""
    prompt, modes, seed, n = case
    cli_items = list(generate_rows(embedded, prompt, modes=modes, seeds=[seed] * len(modes),
                                   max_tokens=n))  # fmt: skip
    ids = prepare_prompt(embedded, prompt, max_tokens=n)
    for _ in range(2):
        assert dumped(served(server_engine, ids, modes, seed, n)) == dumped(cli_items)
    assert sum(e.type == "token" for _, e in cli_items) > len(modes)


def test_the_cli_in_a_busy_server_batch(embedded, server_engine):
    """Beside another request in the shared batch (both pulled in turn, as the server's worker
    does): bitwise when the BLAS is batch-invariant (``runtime.blas``), else the same tokens."""
    prompt, modes, seed, n = CASES[0]
    alone = list(generate_rows(embedded, prompt, modes=modes, seeds=[seed], max_tokens=n))
    decoder = server_engine.decoder
    other = decoder.submit(prepare_prompt(embedded, "Count to ten."), [("normal", 9)],
                           max_tokens=16)  # fmt: skip
    ids = prepare_prompt(embedded, prompt, max_tokens=n)
    work = generation_work(ids, modes, config=server_engine.config, max_tokens=n, seed=seed,
                           stop=(), top_logprobs=5)(server_engine, lambda: False)  # fmt: skip
    jobs, together = [decoder.pull(other), iter(work)], []
    while jobs:
        for job in list(jobs):
            item = next(job, "end")
            if item == "end":
                jobs.remove(job)
            elif job is not jobs[0] and item is not IDLE:
                together.append(item)
    assert decoder.steps > 0 and sum(e.type == "token" for _, e in together) == n
    if BATCH_INVARIANT:
        assert dumped(together) == dumped(alone)
    else:
        assert [e.id for _, e in together if e.type == "token"] == [
            e.id for _, e in alone if e.type == "token"
        ]


def test_the_cli_json_equals_the_server_sse(tmp_path):
    """The two front ends end to end, one short request: the CLI's ``--json`` lines and the
    server's SSE events carry the same values."""
    prompt, seed, n = "Name a colour.", 3, 8
    run = cli("--input", prompt, "--seed", str(seed), "--max-tokens", str(n), "--json")
    assert run.returncode == 0, run.stderr
    from_cli = [e.model_dump(mode="json", exclude=TIMES) for e in events_of(run.stdout)]
    settings = ServerSettings(max_queue=4, max_tokens_limit=64, ui_dir=None)
    body = {"prompt": prompt, "mode": "entropix", "seed": seed, "max_tokens": n}
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=300) as c:
        with c.stream("POST", "/api/generate", json=body) as r:
            assert r.status_code == 200, r.read()
            sse = read_sse(r)
    from_server = [
        {k: v for k, v in e.items() if k not in TIMES}
        for e in (json.loads(d) for name, d in sse.events if name in ("token", "done"))
    ]
    assert from_server == from_cli and len(from_cli) == n + 1


# --------------------------------------------------------------------------- the step's callers
# Every place that runs a decode or prefill step: (module, function) -> what it calls and why.
# A new caller fails the test below: one loop should call the step, not a second copy of it.
CALLERS = {
    ("engine.batch", "BatchDecoder._decode"): ({"decode_shared", "sample_rows"},
        "the decode step of every running row of every request (the one loop)"),
    ("engine.batch", "BatchDecoder._start"): ({"sample_rows"},
        "a request's first token, from its prefill's last logits"),
    ("engine.prefill", "prefill_short"): ({"step_shared"},
        "short prompts prefilled together, one padded row each"),
    ("engine.prefix_cache", "prefill_chunks"): ({"layer_steps"},
        "a long prompt's prefill in chunks (the decoder's, the prefix cache's filling)"),
    ("models.families", "FamilyModel.check_shared"): ({"step_shared"},
        "at load: one token through the shared batch, so a family that cannot join it fails"),
    ("models.llama", "Model.__call__"): ({"layer_steps"}, "a pass is its layer steps, run out"),
    ("uncertainty.step", "sample_rows"): ({"sample_step"},
        "rows that share a plan in one compiled call (``plan_step``, always compiled)"),
}  # fmt: skip
STEP_MODULE = "mlx_entropix.uncertainty.step"
BY_NAME = {"sample_rows", "sample_step", "plan_step"}  # functions of STEP_MODULE
# the model's: lm.model(...), ...
BY_ATTRIBUTE = {"decode_shared", "step_shared", "layer_steps", "model"}


def step_calls(path: Path, module: str) -> dict[str, set[str]]:
    """The step functions ``path`` calls, per enclosing function ("Class.method", "f.inner").
    A bare name counts only if it is ``uncertainty.step``'s (imported from it, or defined in
    it); an attribute call by its name (``lm.model(...)``, ``model.step_shared(...)``)."""
    tree = ast.parse(path.read_text())
    ours = set(BY_NAME) if module == STEP_MODULE else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("uncertainty.step"):
            ours |= {a.asname or a.name for a in node.names if a.name in BY_NAME}
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{where}.{child.name}" if where else child.name
            if isinstance(child, ast.Call):
                f = child.func
                if isinstance(f, ast.Name) and f.id in ours:
                    found.setdefault(where, set()).add(f.id)
                elif isinstance(f, ast.Attribute) and f.attr in BY_ATTRIBUTE:
                    found.setdefault(where, set()).add(f.attr)
            visit(child, inner)

    visit(tree, "")
    return found


def test_the_step_has_only_the_known_callers():
    found = {}
    for path in PKG.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for where, calls in step_calls(path, module).items():
            found[(module.removeprefix("mlx_entropix."), where)] = calls
    assert found == {k: calls for k, (calls, _) in CALLERS.items()}, (
        "a decode or prefill step is called from a new place (or a known one is gone): run it "
        "through the one loop (engine/batch.py), or list it in CALLERS with its reason"
    )


def test_the_walk_finds_calls_it_should(tmp_path):
    """Guards the test above: an alias of the step and a method call are seen, a function of
    the same name from elsewhere is not (self-consistency's ``sample_rows``)."""
    probe = tmp_path / "probe.py"
    probe.write_text("from mlx_entropix.uncertainty.step import sample_rows as s\n"
                     "from .consistency import sample_rows\n"
                     "class A:\n    def f(self, lm):\n        s(1)\n        lm.model(2)\n"
                     "        sample_rows(3)\n")  # fmt: skip
    assert step_calls(probe, "mlx_entropix.eval.probe") == {"A.f": {"s", "model"}}

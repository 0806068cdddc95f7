"""Presets, reachability of every quadrant, and the per-state ablation switch (issue 22)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.config import (
    CONFIG_DIR,
    PRESET_NAMES,
    STATE_NAMES,
    SamplerConfig,
    apply_preset,
    load_presets,
)
from mlx_entropix.events import ACTIONS, STATES
from mlx_entropix.uncertainty.sampler import classify_states, decide, unreachable_states

import mlx.core as mx
import pytest

VOCAB = 49152  # SmolLM2's vocabulary: entropy is at most log2(49152) = 15.585 bits
SHIPPED = CONFIG_DIR / "smollm2-135m-instruct.json"
CALIBRATION = Path(__file__).resolve().parents[1] / "benchmarks/results/calibration_metrics.json"


def shipped_configs() -> dict[str, SamplerConfig]:
    base = SamplerConfig.from_file(SHIPPED)
    out = {"smollm2-135m-instruct": base, "reference": SamplerConfig.from_file("reference")}
    out.update({f"preset:{n}": apply_preset(base, n) for n in PRESET_NAMES})
    return out


def quadrant_rows(cfg: SamplerConfig) -> dict[str, list[float]]:
    """One constructed metrics row inside each state's region of ``cfg``."""
    mid_e = (cfg.low_ent + cfg.high_ent) / 2
    attn = [2.7, 0.7, 0.02, 2.4]  # typical attention metrics of the embedded model
    return {
        "flowing": [cfg.low_ent / 2, cfg.low_vent / 2, *attn],
        "treading": [cfg.high_ent + 0.5, cfg.low_vent / 2, *attn],
        "exploring": [mid_e, cfg.high_vent + 1, *attn],
        "resampling": [max(cfg.high_ent, cfg.med_ent) + 0.5, cfg.high_vent + 1, *attn],
        "adaptive": [mid_e, (cfg.low_vent + cfg.high_vent) / 2, *attn],
    }


def test_state_names_agree_with_the_events():
    assert STATE_NAMES == STATES


def test_presets_load_and_name_their_trade():
    presets = load_presets()
    assert {"precise", "balanced", "creative"} <= set(presets) and tuple(presets) == PRESET_NAMES
    for name, p in presets.items():
        assert p.summary.strip(), name
        assert apply_preset(SamplerConfig(), name) != SamplerConfig() or not p.overrides


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown preset 'loud' \\(choose from precise"):
        apply_preset(SamplerConfig(), "loud")
    assert apply_preset(SamplerConfig(), None) == SamplerConfig()


@pytest.mark.parametrize("name", list(shipped_configs()))
def test_no_shipped_config_has_an_unreachable_state(name):
    cfg = shipped_configs()[name]
    assert unreachable_states(cfg, VOCAB) == []
    assert cfg.high_ent < math.log2(VOCAB)


def test_unreachable_and_shadowed_states_are_caught():
    ok = SamplerConfig(low_ent=1.0, low_vent=9.0, med_ent=3.0, high_ent=5.0, high_vent=12.0)
    assert unreachable_states(ok, VOCAB) == []
    # The old shipped file: high_ent 15.59 bits, past log2(49152) = 15.585.
    assert unreachable_states(ok.merged({"high_ent": 15.59}), VOCAB) == ["treading", "resampling"]
    # Flowing takes every entropy below 16 bits (all of them) at low varentropy: treading
    # is shadowed for every input.
    assert "treading" in unreachable_states(ok.merged({"low_ent": 16.0}), VOCAB)
    assert unreachable_states(ok.merged({"low_ent": 0.0}), VOCAB) == ["flowing"]


@pytest.mark.parametrize("name", list(shipped_configs()))
def test_decision_table_per_shipped_config(name):
    """Each state is reached on constructed metrics and takes its own action."""
    cfg = shipped_configs()[name]
    rows = quadrant_rows(cfg)
    assert classify_states(list(rows.values()), cfg) == list(rows)
    plan = decide(mx.array(list(rows.values()), dtype=mx.float32), cfg, "entropix", True)
    action = dict(zip(rows, (ACTIONS[a] for a in plan.action.tolist()), strict=True))
    temp = dict(zip(rows, plan.temperature.tolist(), strict=True))
    assert action["flowing"] == "argmax" and temp["flowing"] == 0.0
    assert action["treading"] == "clarify"  # the pause token, once per generation
    assert action["exploring"] == action["resampling"] == "sample"
    assert temp["exploring"] > 0 and temp["resampling"] >= cfg.mist_min_temperature > 0
    # best of n where it draws several (reference, precise), else one draw: "sample"
    assert action["adaptive"] == ("best_of_n" if cfg.n_adaptive_samples > 1 else "sample")
    assert plan.n_samples.tolist()[4] == cfg.n_adaptive_samples
    later = decide(mx.array([rows["treading"]], dtype=mx.float32), cfg, "entropix", False)
    assert ACTIONS[later.action.item()] == "sample" and later.temperature.item() > 0


@pytest.mark.parametrize("state", [s for s in STATE_NAMES if s != "flowing"])
def test_ablation_replaces_one_state_by_argmax(state):
    base = SamplerConfig.from_file(SHIPPED)
    cfg = base.merged({"greedy_states": [state]})
    rows = quadrant_rows(cfg)
    plan = decide(mx.array(list(rows.values()), dtype=mx.float32), cfg, "entropix", True)
    ref = decide(mx.array(list(rows.values()), dtype=mx.float32), base, "entropix", True)
    for i, s in enumerate(rows):
        if s == state:
            assert ACTIONS[plan.action.tolist()[i]] == "argmax"
            assert plan.temperature.tolist()[i] == 0.0 and plan.top_k.tolist()[i] == 1
        else:  # every other state keeps its action
            assert plan.action.tolist()[i] == ref.action.tolist()[i]
            assert plan.temperature.tolist()[i] == pytest.approx(ref.temperature.tolist()[i])
    with pytest.raises(ValueError):
        base.merged({"greedy_states": ["sleepy"]})


def test_every_state_occurs_on_the_recorded_prompt_mix():
    """The documented rates: the shipped thresholds on the calibration run's tokens (the prompt
    set, the open dev prompts and dev items; ``calibrate --mix``) give each state >= 1%."""
    metrics = json.loads(CALIBRATION.read_text())
    states = classify_states(metrics, SamplerConfig.from_file(SHIPPED))
    for s in STATES:
        assert states.count(s) / len(states) >= 0.01, s


def test_eval_cli_rejects_an_unknown_preset_before_loading(tmp_path: Path, capsys):
    from mlx_entropix.eval.main import main

    csv = tmp_path / "one.csv"
    csv.write_text("prompt,answer\nWhat is 1 + 1?,2\n")
    assert main([str(csv), "--preset", "loud", "--quiet", "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval: error: unknown preset 'loud'") and "\n" not in err


def test_openai_requests_validate_the_preset():
    from mlx_entropix.server.schemas import ChatCompletionRequest, GenerationFields

    from pydantic import ValidationError

    msgs = [{"role": "user", "content": "hi"}]
    assert ChatCompletionRequest(messages=msgs, preset="creative").preset == "creative"
    with pytest.raises(ValidationError, match="unknown preset 'loud'"):
        ChatCompletionRequest(messages=msgs, preset="loud")
    with pytest.raises(ValidationError, match="unknown preset"):
        GenerationFields(prompt="hi", preset="Creative")  # names are exact


def test_config_files_are_utf8_whatever_the_locale(tmp_path: Path):
    # Found by review: in an ASCII locale (LC_ALL=C, PYTHONUTF8=0) a TOML with an accented
    # comment was "invalid config: 'ascii' codec can't decode", and a config with a non-ASCII
    # answer cue could not be saved.
    (tmp_path / "c.toml").write_text("# réglages\nfork_answer_cue = 'Donc la réponse est'\n",
                                     encoding="utf-8")  # fmt: skip
    code = (
        "import sys; from mlx_entropix.config import SamplerConfig as C; "
        "c = C.from_file(sys.argv[1]); c.to_file(sys.argv[2]); "
        "assert C.from_file(sys.argv[2]).fork_answer_cue == 'Donc la r\\xe9ponse est'"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.toml"),
                           str(tmp_path / "out.json")], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Donc la réponse est" in (tmp_path / "out.json").read_text(encoding="utf-8")

"""The UI's TypeScript event types are generated from the pydantic schema and must not drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_ui_types", ROOT / "scripts/gen_ui_types.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_types_match_schema():
    gen = _generator()
    committed = gen.OUT.read_text()
    assert committed == gen.render(), (
        "ui/src/generated/events.ts is stale: run `uv run python scripts/gen_ui_types.py`"
    )


def test_types_cover_every_event_field():
    from mlx_entropix import events

    text = _generator().render()
    for model in (events.TokenEvent, events.DoneEvent, events.ErrorEvent, events.Metrics):
        assert f"export interface {model.__name__} {{" in text
        for field in model.model_fields:
            assert f"  {field}: " in text, (model.__name__, field)
    for state, info in events.STATE_INFO.items():
        assert f'"colour": "{info.colour}"' in text, state

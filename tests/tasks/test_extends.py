"""A spec that ``extends`` another: the base's tables, with the given keys replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfbench.core.errors import UserError
from cfbench.tasks.spec import load_spec, resolve_spec


def test_mlp_boards_extend_their_tasks() -> None:
    base, mlp = resolve_spec("heart"), resolve_spec("heart-mlp")
    assert (mlp.model, base.model) == ("mlp", "random-forest")
    assert mlp.model_seed == base.model_seed and mlp.schema == base.schema
    assert mlp.card == base.card and mlp.loader == base.loader
    assert mlp.model_params["hidden_layer_sizes"] == [64]
    assert mlp.hash != base.hash  # a task of its own: own cache key, own board


def test_extends_errors_are_one_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('extends = "b.toml"\nname = "a"\n')
    b.write_text('extends = "a.toml"\nname = "b"\n')
    with pytest.raises(UserError, match="extends itself"):
        load_spec(a)
    a.write_text('extends = "missing.toml"\nname = "a"\n')
    with pytest.raises(UserError, match="extends: no spec file .*missing.toml"):
        load_spec(a)
    a.write_text('extends = 3\nname = "a"\n')
    with pytest.raises(UserError, match="extends: expected the path"):
        load_spec(a)

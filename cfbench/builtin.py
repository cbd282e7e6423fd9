"""The core's own plugin: the nearest-neighbour generator, the built-in loaders and tasks.

Registered through the ``cfbench`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from pathlib import Path

from cfbench.core.generator import Capabilities, GeneratorSpec
from cfbench.core.hookspecs import hookimpl
from cfbench.generators.nearest_neighbour import NearestNeighbour
from cfbench.tasks.ai_readi.loader import load_ai_readi
from cfbench.tasks.catalogue import LOADERS as CATALOGUE_LOADERS
from cfbench.tasks.data_commands import add_data_commands
from cfbench.tasks.heart import load_heart
from cfbench.tasks.loaders import BUILTIN_LOADERS


def _nearest_neighbour(variant: str = "default"):
    """Factory: the nearest-neighbour generator takes no parameters (``params=()``)."""

    return NearestNeighbour(variant)


@hookimpl
def cfbench_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="nearest-neighbour",
            factory=_nearest_neighbour,
            capabilities=Capabilities(
                multiple=True, constraints=True, needs_training_data=True, batch_size=None
            ),
            description="closest correctly classified target-class training row, immutables kept",
            cost={"*": 0.001},
        )
    ]


def _ai_readi(data_dir: str | None = None, **options: object):
    return load_ai_readi(data_dir=data_dir, **options)


def _uci_heart(**options: object):
    return load_heart(**options)


@hookimpl
def cfbench_dataset_loaders() -> dict:
    return {**BUILTIN_LOADERS, **CATALOGUE_LOADERS, "ai-readi": _ai_readi, "uci-heart": _uci_heart}


@hookimpl
def cfbench_add_commands(subparsers) -> None:
    """``cfbench data report | synth-ai-readi | ai-readi``."""

    add_data_commands(subparsers)


def builtin_tasks_dir() -> Path:
    """Spec files: packaged as ``cfbench/_tasks`` in a wheel, ``tasks/`` in a source checkout."""
    packaged = Path(__file__).parent / "_tasks"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "tasks"


@hookimpl
def cfbench_task_paths() -> list[Path]:
    return [builtin_tasks_dir()]

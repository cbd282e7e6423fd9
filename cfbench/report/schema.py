"""The JSON schema of a board (``leaderboard/schema.json``), generated from the metric registry.

``python -m cfbench.report.schema`` rewrites ``leaderboard/schema.json``; a test keeps the
committed file equal to :func:`board_schema`, so a new metric reaches the schema by its
registry entry alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cfbench.core.strict_json import dumps
from cfbench.records.store import SCHEMA_VERSION
from cfbench.score import registry as R

PATH = Path("leaderboard") / "schema.json"
_NUMBER = {"type": ["number", "null"]}


def board_schema() -> dict[str, Any]:
    """The board JSON schema: fixed structure, plus every scope's metrics from the registry."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cfbench leaderboard of one task",
        "type": "object",
        "required": [
            "schema_version",
            "task",
            "task_hash",
            "data_source",
            "classifier",
            "config",
            "provenance",
            "methods",
            "ranks",
            "ci",
            "augmentation"
        ],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "records_sha256": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$"
            },
            "task": {
                "type": "string",
                "minLength": 1
            },
            "task_hash": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$"
            },
            "data_source": {
                "type": "string"
            },
            "classifier": {
                "type": "object",
                "required": [
                    "model",
                    "accuracy",
                    "f1",
                    "n_train",
                    "n_test"
                ],
                "properties": {
                    "accuracy": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1
                    },
                    "f1": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1
                    }
                }
            },
            "config": {
                "type": "object",
                "required": [
                    "methods",
                    "seeds",
                    "k",
                    "timeout"
                ]
            },
            "provenance": {
                "type": "object",
                "required": [
                    "cfbench",
                    "python",
                    "libraries",
                    "host",
                    "seed",
                    "task_hash"
                ]
            },
            "skipped_methods": {
                "type": "object",
                "additionalProperties": {
                    "type": "string"
                }
            },
            "suite": {
                "description": "the suite file the run came from (cfbench run --config), or null",
                "oneOf": [
                    {
                        "type": "null"
                    },
                    {
                        "type": "object",
                        "required": [
                            "file",
                            "sha256"
                        ],
                        "properties": {
                            "file": {
                                "type": "string"
                            },
                            "sha256": {
                                "type": "string",
                                "pattern": "^[0-9a-f]{64}$"
                            }
                        }
                    }
                ]
            },
            "methods": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "type": "object",
                    "required": [
                        "all"
                    ],
                    "additionalProperties": {
                        "$ref": "#/$defs/direction"
                    }
                }
            },
            "ranks": {
                "type": "object",
                "required": [
                    "methods",
                    "metrics",
                    "overall"
                ],
                "properties": {
                    "unranked": {
                        "type": "object",
                        "description": "ranked metrics left out of this board's ranks, with why",
                        "additionalProperties": {"type": "string"}
                    },
                    "metrics": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": [
                                "mean_rank",
                                "friedman",
                                "nemenyi_cd",
                                "n_queries"
                            ]
                        }
                    }
                }
            },
            "ci": {
                "type": "object"
            },
            "identical": {
                "type": "array",
                "description": "groups of methods whose CFs are identical for every query",
                "items": {"type": "array", "items": {"type": "string"}, "minItems": 2}
            },
            "added": {
                "type": "array",
                "description": "methods added by `cfbench leaderboard --add`, each with the run "
                               "command and provenance its rows came from",
                "items": {
                    "type": "object",
                    "required": ["methods", "command", "provenance"],
                    "properties": {
                        "methods": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "command": {"type": "string"},
                        "provenance": {"type": "object"},
                        "augment_methods": {"type": "array", "items": {"type": "string"}}
                    }
                }
            },
            "augmentation_kept": {
                "type": "object",
                "description": "set when `--update --keep-augmentation` kept the study of the "
                               "board it replaced (that board's records SHA-256 and cfbench)",
                "properties": {
                    "records_sha256": {"type": ["string", "null"]},
                    "cfbench": {"type": ["string", "null"]}
                }
            },
            "augmentation": {
                "oneOf": [
                    {
                        "type": "null"
                    },
                    {
                        "type": "object",
                        "required": [
                            "fraction",
                            "seeds",
                            "scenarios",
                            "aggregate"
                        ],
                        "properties": {
                            "protocol": {"enum": [2]},
                            "aggregate": {
                                "oneOf": [
                                    {
                                        "type": "array",
                                        "description": "protocol 1: mean and std over seeds on a fixed test split",
                                        "items": {
                                            "type": "object",
                                            "required": [
                                                "scenario", "method", "cfs", "f1", "f1_std", "macro_f1",
                                                "accuracy", "balanced_accuracy", "f1_recovered",
                                                "f1_recovered_rel", "n_added"
                                            ],
                                            "properties": {"scenario": {"enum": ["A", "B", "C"]}}
                                        }
                                    },
                                    {
                                        "type": "object",
                                        "description": "protocol 2: per-repetition splits, CIs, paired tests",
                                        "required": ["deficit", "methods"],
                                        "properties": {
                                            "deficit": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["fraction", "scenario", "f1_full",
                                                                 "f1_scarce", "f1_gap", "f1_present"]
                                                }
                                            },
                                            "methods": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": [
                                                        "fraction", "scenario", "method", "cfs", "f1",
                                                        "macro_f1", "balanced_accuracy", "f1_gain",
                                                        "n_added", "n_seeds", "vs_no-augmentation",
                                                        "vs_smote", "f1_recovery"
                                                    ],
                                                    "properties": {"scenario": {"enum": ["A", "B", "C"]}}
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        }
                    }
                ]
            }
        }
    }
    schema["properties"]["ci"] = {
        "type": "object", "required": [m.name for m in R.ranked()],
        "additionalProperties": {"type": "object", "additionalProperties": {
            "type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3}}}
    schema["$defs"] = {"direction": {
        "type": "object",
        "required": ["n_queries", "n_cfs", "n_valid", "status_counts", *R.SCOPES, "feature_change"],
        "properties": {
            "status_counts": {"type": "object", "required": [
                "ok", "not_found", "error", "timeout", "invalid_output"]},
            **{scope: {"type": "object", "required": [m.name for m in R.in_scope(scope)],
                       "properties": {m.name: _NUMBER for m in R.in_scope(scope)}}
               for scope in R.SCOPES},
        },
    }}
    return schema


def text() -> str:
    """The schema file's text."""
    return dumps(board_schema(), indent=2) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PATH
    out.write_text(text())
    print(f"wrote {out}")

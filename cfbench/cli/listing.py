"""``cfbench list tasks|methods|metrics``: what this installation can run and score, as a
table, JSON or (method parameters) Markdown."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cfbench.core.errors import UserError
from cfbench.core.generator import params_markdown
from cfbench.core.model import KINDS
from cfbench.core.plugins import registry
from cfbench.core.strict_json import dumps
from cfbench.score.registry import REGISTRY
from cfbench.tasks.catalogue import status as data_status
from cfbench.tasks.spec import available_specs, load_spec

LIST_WHAT = ("tasks", "methods", "metrics")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cfbench list``."""
    ls = subparsers.add_parser("list", help="list tasks, methods or metrics")
    ls.add_argument("what", choices=LIST_WHAT)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--params", action="store_true", help="methods: each method's parameters")
    ls.add_argument("--format", choices=("table", "json", "markdown"), default=None,
                    help="output format (--json = --format json)")
    ls.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the tasks, methods (with why one is unavailable) or metrics."""
    rows: list[dict[str, Any]]
    if args.what == "tasks":
        rows = [_task_row(n, p) for n, p in sorted(available_specs().items())]
    elif args.what == "methods":
        rows = []
        for name, spec in sorted(registry().generators.items()):
            ok, hint = spec.status()
            caps = spec.capabilities
            off = {v: h for v in spec.variants for good, h in [spec.variant_status(v)]
                   if ok and not good}
            rows.append({
                "name": name, "variants": list(spec.variants), "available": ok, "hint": hint,
                "unavailable_variants": off,
                "plugin": spec.plugin, "extra": spec.extra,
                "capabilities": {"multiple": caps.multiple, "constraints": caps.constraints,
                                 "needs_training_data": caps.needs_training_data,
                                 "stochastic": caps.stochastic},
                "description": spec.description,
                "params": [p.as_dict() for p in spec.params],
                "needs": _kinds(spec.needs),
                "variant_needs": {v: _kinds(n) for v, n in spec.variant_needs.items()},
            })
        for plugin, why in sorted(registry().broken.items()):
            rows.append({"name": f"(plugin {plugin})", "variants": [], "available": False,
                         "unavailable_variants": {},
                         "hint": f"plugin failed to load: {why}", "plugin": plugin, "extra": None,
                         "capabilities": {}, "description": "", "params": [], "needs": [],
                         "variant_needs": {}})
        for why in registry().conflicts:
            rows.append({"name": "(conflict)", "variants": [], "available": False, "hint": why,
                         "unavailable_variants": {}, "plugin": None, "extra": None,
                         "capabilities": {}, "description": "", "params": [], "needs": [],
                         "variant_needs": {}})
    else:
        cards = [m.card() for m in REGISTRY]
        if args.json or args.format == "json":
            rows = cards
        else:
            rows = [{"name": c["name"], "scopes": ", ".join(c["scopes"]),
                     "better": c["better"] or "–", "ranked": c["rank_group"] or "–",
                     "description": c["description"], "formula": c["formula"]} for c in cards]
    fmt = "json" if args.json else (args.format or "table")
    if fmt == "json":
        print(dumps(rows, indent=2))
        return 0
    if args.what == "methods" and (args.params or fmt == "markdown"):
        return _list_params(fmt, args.params)
    if fmt == "markdown":
        raise UserError(f"cfbench list {args.what}: --format markdown is for `list methods --params`")
    table = Table(title=args.what)
    if args.what == "methods":
        for col in ("method", "variants", "status", "needs", "capabilities"):
            table.add_column(col)
        for r in rows:
            caps = ", ".join(k for k, v in r["capabilities"].items() if v) or "–"
            # escape: an install hint such as cfbench-harness[dice] is not rich markup
            word = "refused" if r["name"] == "(conflict)" else "unavailable"
            status = ("[green]available[/green]" if r["available"]
                      else f"[red]{word}[/red]: {escape(r['hint'])}")
            for v, why in r["unavailable_variants"].items():
                status += f"\n[red]{escape(v)} unavailable[/red]: {escape(why)}"
            needs = ", ".join(r["needs"]) or "–"
            for v, n in r["variant_needs"].items():
                needs += f"\n{escape(v)}: {', '.join(n)}"
            table.add_row(escape(r["name"]), escape(", ".join(r["variants"])), status, needs, caps)
    elif args.what == "tasks":
        for col in ("task", "data", "rows", "licence", "present", "source"):
            table.add_column(col, overflow="fold")
        for r in rows:
            present = ("[green]yes[/green]" if r["present"] else
                       f"[red]no[/red]: `cfbench data fetch {escape(r['name'])}`"
                       if r["data"] == "fetched" else f"[red]no[/red]: {escape(r['where'])}")
            table.add_row(escape(r["name"]), r["data"], str(r["rows"] or "–"),
                          escape(_short(r["licence"] or "–", 32)), present,
                          escape(_short(r["source"] or r["error"] or "–", 48)))
    else:
        keys = list(rows[0]) if rows else ["name"]
        for k in keys:
            table.add_column(k)
        for r in rows:  # escape: a formula's [f(c) = t] is not rich markup
            table.add_row(*(escape(str(r[k])) for k in keys))
    Console(width=160).print(table)
    return 0


def _kinds(kinds: frozenset[str]) -> list[str]:
    """A method's needs in ``KINDS`` order (unknown names last), for JSON and the table."""
    return [k for k in KINDS if k in kinds] + sorted(set(kinds) - set(KINDS))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _task_row(name: str, path: Path) -> dict[str, Any]:
    """One task's line: its card, and whether its data is on this machine."""
    try:
        spec = load_spec(path)
    except UserError as exc:  # still listed; running it reports the same problem
        return {"name": name, "path": str(path), "data": "?", "rows": None, "licence": None,
                "source": None, "present": False, "where": "", "card": {}, "error": str(exc)}
    present, where = data_status(spec.loader, spec.loader_options, spec.folder)
    data = spec.loader
    return {"name": name, "path": str(path), "data": data, "rows": spec.card.get("rows"),
            "licence": spec.card.get("licence"), "source": spec.card.get("source"),
            "present": present, "where": where, "card": spec.card, "error": None}


def _list_params(fmt: str, params: bool) -> int:
    """``cfbench list methods --params``: every method's declared parameters."""
    specs = [s for _, s in sorted(registry().generators.items())]
    if fmt == "markdown":
        print(params_markdown(specs), end="")
        return 0
    table = Table(title="method parameters (--param METHOD[:VARIANT].KEY=VALUE)")
    for col in ("method", "parameter", "type", "default", "valid", "description"):
        table.add_column(col)
    for spec in specs:
        if not spec.params:
            table.add_row(spec.name, "–", "", "", "", "takes no parameters")
        for p in spec.params:
            table.add_row(spec.name, p.name, p.type.__name__, "unset" if p.default is None
                          else str(p.default), p.allowed(), p.description)
    Console(width=160).print(table)
    return 0

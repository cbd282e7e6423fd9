"""``cfbench list methods`` shows what each method needs of the classifier."""

from __future__ import annotations

import json

from cfbench.cli.app import main


def test_list_methods_shows_needs(capsys):
    assert main(["list", "methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nearest-neighbour"]["needs"] == ["proba"]
    assert rows["nearest-neighbour"]["variant_needs"] == {}
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "needs" in out.splitlines()[2] and "proba" in out

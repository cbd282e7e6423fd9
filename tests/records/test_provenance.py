"""The release a record names: a plugin's distribution, version and, for an editable install,
the git commit of its checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cfbench.records import provenance
from cfbench.records.provenance import editable_source, git_commit, plugin_distribution


def _dist(site: Path, name: str, source: Path | None) -> None:
    """A dist-info for ``name`` 2.0 in ``site``, editable from ``source`` when given."""
    info = site / f"{name}-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.0\n")
    if source is not None:
        (info / "direct_url.json").write_text(json.dumps(
            {"url": source.as_uri(), "dir_info": {"editable": True}}))


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site").mkdir()
    provenance.plugin_distribution.cache_clear()
    provenance.distribution_release.cache_clear()
    yield tmp_path / "site"
    provenance.plugin_distribution.cache_clear()
    provenance.distribution_release.cache_clear()


def test_an_installed_release_is_named_by_name_and_version(site):
    _dist(site, "cfbench_released", None)
    assert plugin_distribution("cfbench_released") == {"name": "cfbench_released", "version": "2.0"}
    assert plugin_distribution("cfbench_not_installed") == {"name": "cfbench_not_installed"}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_an_editable_install_names_the_commit_of_its_checkout(site, tmp_path):
    repo = tmp_path / "my plugin"  # a space: the URL is percent-encoded
    repo.mkdir()
    (repo / "plugin.py").write_text("")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c",
           "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "plugin.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    _dist(site, "cfbench_editable", repo)
    import importlib.metadata

    assert editable_source(importlib.metadata.distribution("cfbench_editable")) == str(repo)
    assert plugin_distribution("cfbench_editable") == {
        "name": "cfbench_editable", "version": "2.0", "editable": True, "commit": head}
    # the checkout the plugin's code was imported from wins over the install's own folder
    assert plugin_distribution("cfbench_editable", str(tmp_path / "elsewhere.py")) == {
        "name": "cfbench_editable", "version": "2.0", "editable": True}


def test_no_git_means_no_commit_and_no_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path
    assert git_commit(str(tmp_path)) is None
    assert git_commit(str(tmp_path / "not-there")) is None

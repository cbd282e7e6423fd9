"""The release a record names: a plugin's distribution, version and, for an editable install,
the git commit of its checkout."""

from __future__ import annotations

import hashlib
import importlib.metadata
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


# ----------------------------------------------------------------------------- machine and environment

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_vnni

processor\t: 1
model name\t: Another CPU the first one stands for
flags\t\t: fpu sse2
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 asimdhp bf16 i8mm sve
CPU implementer\t: 0x41
"""


def test_cpuinfo_gives_the_model_and_only_the_numeric_flags_present():
    model, flags = provenance.parse_cpuinfo(X86)
    assert model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"  # not "143", not processor 1's
    assert flags == ["fma", "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                     "amx_bf16"]  # in NUMERIC_CPU_FLAGS order; sse2 and fpu are left out
    assert provenance.parse_cpuinfo(ARM) == (None, ["asimd", "asimdhp", "bf16", "i8mm", "sve"])
    assert provenance.parse_cpuinfo("") == (None, [])


def test_without_cpuinfo_the_model_comes_from_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    monkeypatch.setattr(provenance.platform, "machine", lambda: "riscv64")
    provenance.cpu.cache_clear()
    try:
        assert provenance.cpu() == ("riscv64", ())
    finally:
        provenance.cpu.cache_clear()


def test_the_environment_hash_names_the_set_installed_not_its_order():
    pairs = [("NumPy", "2.0.1"), ("scikit_learn", "1.5.0"), ("pandas", "2.2.0")]
    h = provenance.requirements_sha256(pairs)
    assert h == hashlib.sha256(b"numpy==2.0.1\npandas==2.2.0\nscikit-learn==1.5.0").hexdigest()
    assert provenance.requirements_sha256(reversed(pairs + pairs[:1])) == h  # order, duplicates
    assert provenance.requirements_sha256([*pairs[:2], ("pandas", "2.2.1")]) != h


def test_the_environment_hash_covers_every_installed_distribution_once_per_process(site, monkeypatch):
    provenance.environment_sha256.cache_clear()
    try:
        before = provenance.environment_sha256()
        _dist(site, "cfbench_new_dist", None)  # installed later in the process: not seen
        assert provenance.environment_sha256() == before
        provenance.environment_sha256.cache_clear()
        after = provenance.environment_sha256()
        assert after != before
        expected = {f"{provenance.canonical_name(d.metadata['Name'])}=={d.version}"
                    for d in importlib.metadata.distributions() if d.metadata["Name"]}
        assert "cfbench-new-dist==2.0" in expected
        assert after == hashlib.sha256("\n".join(sorted(expected)).encode()).hexdigest()
    finally:
        provenance.environment_sha256.cache_clear()


def test_every_record_names_the_cpu_its_flags_and_the_environment():
    env = provenance.environment()
    assert env["cpu"] and isinstance(env["cpu"], str)
    assert set(env["cpu_flags"]) <= set(provenance.NUMERIC_CPU_FLAGS)
    assert env["cpu_flags"] == list(provenance.cpu()[1])
    assert env["environment_sha256"] == provenance.environment_sha256()
    assert len(env["environment_sha256"]) == 64 and int(env["environment_sha256"], 16) >= 0
    if provenance.CPUINFO.is_file():  # Linux: what /proc/cpuinfo says, not a fallback
        assert (env["cpu"], env["cpu_flags"]) == provenance.parse_cpuinfo(
            provenance.CPUINFO.read_text(errors="replace"))

"""The task catalogue: shipped tables verified by checksum, fetched tables downloaded once from a
local HTTP server (never the internet), with corrupted downloads, wrong checksums and no network
each refused in one line that says where to place the file."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfbench.core.errors import UserError
from cfbench.core.safe_load import load_toml
from cfbench.tasks import catalogue, fetch
from cfbench.tasks.datasets import feature_matrix
from cfbench.tasks.spec import Task, available_specs, load_spec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "catalogue"
SPECS = {name: load_spec(path) for name, path in available_specs().items()}
PACKAGED = sorted(n for n, s in SPECS.items() if s.loader == "packaged")
FETCHED = sorted(n for n, s in SPECS.items() if s.loader == "fetched")


class _Server:
    """A file server on 127.0.0.1: ``files`` maps a name to the bytes served (None: 404)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | None] = {}
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                name = self.path.lstrip("/")
                server.requests.append(name)
                blob = server.files.get(name)
                if blob is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                # a truncated body: the connection closes before Content-Length bytes arrive
                self.wfile.write(blob[: len(blob) // 2] if name in server.truncate else blob)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    srv = _Server()
    monkeypatch.setenv("CFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fetch.MIRROR_ENV, srv.url)
    yield srv
    srv.httpd.shutdown()


def _remote(blob: bytes, name: str = "t.csv") -> fetch.Remote:
    return fetch.Remote(url=f"https://example.org/{name}", file=name,
                        sha256=hashlib.sha256(blob).hexdigest())


CSV = b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n"


def test_fetch_downloads_once_and_verifies(server: _Server) -> None:
    server.files["t.csv"] = CSV
    src = _remote(CSV)
    path = fetch.fetch(src, "t")
    assert path.read_bytes() == CSV and path == fetch.cached_path(src)
    fetch.fetch(src, "t")
    assert server.requests == ["t.csv"]  # the second call read the verified cached copy


def test_git_blob_id_is_checked_like_git(server: _Server) -> None:
    server.files["t.csv"] = CSV
    blob_id = hashlib.sha1(b"blob %d\0" % len(CSV) + CSV).hexdigest()  # noqa: S324
    src = fetch.Remote(url="https://example.org/t.csv", file="t.csv", git_blob_sha1=blob_id)
    assert fetch.fetch(src, "t").read_bytes() == CSV


@pytest.mark.parametrize("fault", ["corrupted", "wrong-checksum", "truncated", "absent"])
def test_bad_download_is_refused_and_not_kept(server: _Server, fault: str) -> None:
    server.files["t.csv"] = CSV
    src = _remote(CSV)
    if fault == "corrupted":
        server.files["t.csv"] = CSV.replace(b"3,4", b"3,9")
    elif fault == "wrong-checksum":
        src = _remote(b"something else")
    elif fault == "truncated":
        server.truncate.add("t.csv")
    else:
        server.files["t.csv"] = None
    with pytest.raises(UserError) as err:
        fetch.fetch(src, "task t")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("task t: ")
    assert f"place it at {fetch.cached_path(src)}" in msg
    assert not fetch.cached_path(src).exists()
    assert not list(fetch.cached_path(src).parent.glob(".*part"))  # no half file left behind


def test_offline_error_says_which_file_to_place_where(server: _Server, monkeypatch) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()  # nothing listens on the port any more: as offline as it gets
    src = _remote(CSV)
    with pytest.raises(UserError, match=r"cannot download .*t\.csv .*download "
                       r"https://example.org/t\.csv elsewhere and place it at .*data/t\.csv"):
        fetch.fetch(src, "task t")


def test_edited_cached_copy_is_refused(server: _Server) -> None:
    server.files["t.csv"] = CSV
    src = _remote(CSV)
    fetch.fetch(src, "t").write_bytes(CSV + b"7,8,1\n")
    with pytest.raises(UserError, match="expected SHA-256 .*delete it"):
        fetch.fetch(src, "task t")


def test_file_name_cannot_leave_the_cache() -> None:
    with pytest.raises(UserError, match="plain file name"):
        fetch.Remote(url="https://example.org/x", file="../x.csv", sha256="0" * 64)


# --- the catalogue's own specs --------------------------------------------------------------

def test_catalogue_has_cards_and_checksums() -> None:
    assert len(PACKAGED) + len(FETCHED) >= 10
    for name in PACKAGED + FETCHED:
        spec = SPECS[name]
        assert spec.card["rows"] > 0 and spec.card["licence"], name
        opts = spec.loader_options
        assert opts.get("sha256") or opts.get("git_blob_sha1"), name


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_table_loads_as_carded(name: str) -> None:
    spec = SPECS[name]
    dataset = catalogue.load_packaged(**spec.loader_options)
    X, y = feature_matrix(dataset, spec.schema, name)
    assert dataset.notes["rows"] == spec.card["rows"]
    assert set(y.tolist()) == {0, 1} and len(X) <= spec.card["rows"]


def test_packaged_table_with_another_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    name = PACKAGED[0]
    opts = SPECS[name].loader_options
    shutil.copy(catalogue.PACKAGED_DIR / opts["file"], tmp_path / opts["file"])
    monkeypatch.setattr(catalogue, "PACKAGED_DIR", tmp_path)
    (tmp_path / opts["file"]).write_bytes((tmp_path / opts["file"]).read_bytes()[:-10])
    with pytest.raises(UserError, match="does not match dataset.options.sha256"):
        catalogue.load_packaged(**opts)


def _served_spec(name: str, tmp_path: Path, server: _Server) -> Path:
    """The real spec, pointed at the fixture (same format, fewer rows) and its checksum."""
    spec = SPECS[name]
    file = spec.loader_options["file"]
    blob = (FIXTURES / file).read_bytes()
    server.files[file] = blob
    raw = load_toml(Path(spec.path), "task file")
    text = Path(spec.path).read_text()
    real = raw["dataset"]["options"].get("sha256") or raw["dataset"]["options"]["git_blob_sha1"]
    key = "sha256" if raw["dataset"]["options"].get("sha256") else "git_blob_sha1"
    text = text.replace(f'{key} = "{real}"', f'sha256 = "{hashlib.sha256(blob).hexdigest()}"')
    text = text.replace("per_class = 50", "per_class = 3")
    out = tmp_path / f"{name}.toml"
    out.write_text(text)
    return out


@pytest.mark.parametrize("name", FETCHED)
def test_fetched_task_loads_from_a_local_server(name: str, tmp_path: Path, server: _Server) -> None:
    spec = load_spec(_served_spec(name, tmp_path, server))
    ok, _ = catalogue.status(spec.loader, spec.loader_options, spec.folder)
    assert not ok
    task = Task.load(spec)
    assert server.requests == [spec.loader_options["file"]]
    assert task.dataset.source.startswith(f"fetched {spec.loader_options['file']}")
    assert catalogue.status(spec.loader, spec.loader_options, spec.folder)[0]
    assert len(task.queries()) > 0


# --- the commands ---------------------------------------------------------------------------

def _env(server: _Server, tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "CFBENCH_CACHE": str(tmp_path / "cache"), fetch.MIRROR_ENV: server.url}


@pytest.mark.skipif(not FETCHED, reason="no fetched task in the catalogue")
def test_data_fetch_and_list_tasks(server: _Server, tmp_path: Path) -> None:
    from cli_helpers import cli

    name = FETCHED[0]
    spec = SPECS[name]
    file = spec.loader_options["file"]
    env = _env(server, tmp_path)
    listed = cli("list", "tasks", "--json", env=env)
    row = next(r for r in __import__("json").loads(listed.stdout) if r["name"] == name)
    assert row["present"] is False and row["data"] == "fetched" and row["licence"]
    server.files[file] = b"not the table"  # what a broken mirror would send
    r = cli("data", "fetch", name, env=env)
    assert r.returncode == 1 and f"place it at {tmp_path / 'cache' / 'data' / file}" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    # a copy placed by hand is checked against the spec's checksum before it is kept
    wrong = tmp_path / file
    wrong.write_bytes(b"not the table")
    r = cli("data", "fetch", name, "--file", str(wrong), env=env)
    assert r.returncode == 1 and "expected" in r.stderr
    assert not (tmp_path / "cache" / "data" / file).exists()
    r = cli("data", "fetch", "no-such-task", env=env)
    assert r.returncode == 2 and "valid choices" in r.stderr and "all" in r.stderr


def test_card_is_checked_and_left_out_of_the_task_hash(tmp_path: Path) -> None:
    text = Path(SPECS["heart"].path).read_text()
    assert load_spec(Path(SPECS["heart"].path)).hash == SPECS["heart"].hash
    edited = tmp_path / "heart.toml"
    edited.write_text(text.replace('rows = 303', 'rows = 304'))
    assert load_spec(edited).hash == SPECS["heart"].hash  # a card edit changes no result
    edited.write_text(text.replace('rows = 303', 'rows = "many"'))
    with pytest.raises(UserError, match="card.rows: expected a positive row count"):
        load_spec(edited)
    edited.write_text(text.replace('rows = 303', 'rows = 303\nlicense = "x"'))
    with pytest.raises(UserError, match="card: unknown key 'license'; valid keys: source"):
        load_spec(edited)


def test_every_catalogue_task_is_in_the_docs() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "catalogue.md").read_text()
    missing = [n for n in PACKAGED + FETCHED if f"`{n}`" not in doc]
    assert not missing, f"docs/catalogue.md lacks {missing}"


@pytest.mark.slow
def test_run_all_tasks_runs_every_present_task(tmp_path: Path) -> None:
    """What a fresh clone can do offline: every shipped task runs, every fetched one is named."""
    from cli_helpers import cli

    out = tmp_path / "all"
    r = cli("run", "--task", "all", "--methods", "nearest-neighbour,nice:sparsity",
            "--n-queries", "2", "--out", str(out), "--quiet", timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    ran = sorted(p.parent.name for p in out.glob("*/summary.json"))
    present = sorted(n for n, s in SPECS.items()
                     if catalogue.status(s.loader, s.loader_options, s.folder)[0])
    assert ran == present and len(ran) >= 10
    for name in FETCHED:
        if name not in present:
            assert f"cfbench: warning: skipping task {name}: its data is not on this machine " \
                   f"(`cfbench data fetch {name}`)" in r.stderr


@pytest.mark.slow
def test_run_all_a_broken_task_costs_only_its_own_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """A task whose table changed since its spec was written fails alone; the others keep theirs."""
    from cfbench.cli import run as run_cmd
    from cfbench.cli.app import main

    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\n[dataset]\nloader = "table"\n[dataset.options]\n'
                      'path = "t.csv"\nlabel = "y"\nsha256 = "' + "0" * 64 + '"\n'
                      '[[features]]\nname = "a"\n[[features]]\nname = "b"\n')
    from cfbench.tasks import spec as spec_module

    two = {"broken": broken, "heart": Path(SPECS["heart"].path)}
    monkeypatch.setattr(run_cmd, "available_specs", lambda: two)
    monkeypatch.setattr(spec_module, "available_specs", lambda: two)
    out = tmp_path / "out"
    rc = main(["run", "--task", "all", "--methods", "nearest-neighbour", "--n-queries", "1",
               "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "task broken failed, the others go on: " in err and "does not match" in err
    assert (out / "heart" / "summary.json").is_file()

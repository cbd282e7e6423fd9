"""docs/guarantees.md, "Untrusted inputs": each promise and the attacks that broke it (issue 33).

Grouped by promise: credentials are masked in every encoding; ``task init`` writes names only
through a TOML serialiser; suite files go through the validators of the flags; nested, huge and
over-long inputs are one line and exit 2.  Command lines run in-process (``main``), so a user
mistake shows as its exit status and stderr without a subprocess.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np
import pandas as pd
import pytest

from cfbench.cli.app import main
from cfbench.core.errors import UserError
from cfbench.core.names import MAX_NAME
from cfbench.core.redact import redact
from cfbench.core.safe_load import MAX_DEPTH, MAX_JSON_BYTES, load_json_text, loads_toml
from cfbench.execution.suite import load_suite
from cfbench.tasks.spec import Task, available_specs, load_spec, resolve_spec

TASKS = Path(__file__).resolve().parents[2] / "tasks"


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[str]]:
    """``cfbench ARGV`` in this process: (exit status, stderr lines)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def one_line_exit_2(result: tuple[int, list[str]], *fragments: str) -> None:
    code, lines = result
    assert code == 2 and len(lines) == 1, lines
    assert "Traceback" not in lines[0] and all(f in lines[0] for f in fragments), lines


def b64(text: str, urlsafe: bool = False, pad: bool = True) -> str:
    enc = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return enc if pad else enc.rstrip("=")


# ------------------------------------------------------------ credentials, in every encoding

KEY = "sk-Live/Key+42 x"  # characters that percent-encoding, JSON and form-encoding change
USER, PASSWORD = "user", "pa55 w0rd/+@"
PW_URL = quote(PASSWORD, safe="")  # how the password is written inside the base URL
ENV = {"CFBENCH_API_BASE": f"http://{USER}:{PW_URL}@127.0.0.1:9/v1?x=1",
       "CFBENCH_API_KEY": KEY}
#: every form of a secret that must never be left in a record
FORMS = [KEY, quote(KEY, safe=""), quote_plus(KEY), json.dumps(KEY)[1:-1], PASSWORD, PW_URL,
         b64(f"{USER}:{PASSWORD}", pad=False), b64(f"{USER}:{PW_URL}", pad=False),
         b64(f"{USER}:{PASSWORD}", urlsafe=True, pad=False)]


@pytest.mark.parametrize("encoding, leaked", [
    ("raw key", KEY),
    ("percent-encoded key", quote(KEY, safe="")),
    ("percent-encoded key, lower-case hex", quote(KEY, safe="").replace("%2F", "%2f")),
    ("form-encoded key", quote_plus(KEY)),
    ("JSON-escaped key", json.dumps(KEY)[1:-1]),
    ("Bearer key", f"Authorization: Bearer {KEY}"),
    ("raw password", PASSWORD),
    ("percent-encoded password", PW_URL),
    ("URL user info", f"http://{USER}:{PW_URL}@127.0.0.1:9/v1"),
    ("Basic user:pass", f"Authorization: Basic {b64(f'{USER}:{PASSWORD}')}"),
    ("Basic user:pass as in the URL", f"Basic {b64(f'{USER}:{PW_URL}')}"),
    ("base64 user:pass, unpadded", b64(f"{USER}:{PASSWORD}", pad=False)),
    ("base64url user:pass", b64(f"{USER}:{PASSWORD}", urlsafe=True)),
])
def test_credentials_are_masked_in_every_encoding(encoding, leaked):
    text = redact(f"HTTP 401: invalid api key {leaked} (request 7)", environ=ENV)
    assert text.startswith("HTTP 401: invalid api key ") and text.endswith(" (request 7)")
    assert "***" in text and not any(form in text for form in FORMS), text


@pytest.mark.parametrize("leaked", [
    f"Basic {b64('alice:s3cr3t-pw')}",  # not from the environment: any user:pass is masked
    "Bearer ghp_0123456789abcdefABCDEF",
])
def test_unknown_http_credentials_are_masked(leaked):
    text = redact(f"echo: {leaked}", environ={})
    assert text.startswith("echo: ") and leaked.split()[1] not in text and "***" in text


def test_words_after_basic_and_bearer_stay():
    text = "Basic features; Bearer responsibilities; Basic info"
    assert redact(text, environ={}) == text


class EchoAuthServer:
    """A chat endpoint on 127.0.0.1 that refuses every request, echoing its Authorization header
    in the error (what leaked ``Basic dXNlcjpwYTU1dzByZA==`` into records)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
                auth = self.headers.get("Authorization", "")
                outer.seen.append(auth)
                body = json.dumps({"error": {"message": f"invalid api key {auth}",
                                             "type": "invalid_request_error"}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EchoAuthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_echoed_credentials_reach_no_record(monkeypatch, tmp_path):
    """Through a real run: the server's error holds ``Basic <base64 user:pass>``; records.jsonl
    and records.parquet hold the error with every credential masked."""
    pytest.importorskip("openai")
    from cfbench.execution.config import RunConfig
    from cfbench.execution.orchestrator import execute
    from cfbench.execution.select import resolve_methods
    from cfbench.records.store import load_records, write_parquet

    with EchoAuthServer() as srv:
        monkeypatch.setenv("CFBENCH_API_BASE", f"http://{USER}:{PW_URL}@127.0.0.1:{srv.port}/v1")
        monkeypatch.setenv("CFBENCH_API_MODEL", "m")
        monkeypatch.setenv("CFBENCH_API_KEY", KEY)
        task = Task.load(resolve_spec("heart"))
        params = (("api-zeroshot", {"concurrency": 1}),)
        cfg = RunConfig(task="heart", methods="api-zeroshot", n_queries=1, timeout=30.0,
                        out=tmp_path / "run", params=params)
        execute(cfg, task, resolve_methods("api-zeroshot", params=params)[0])
    assert srv.seen and any(any(f in h for f in FORMS) for h in srv.seen), srv.seen  # it leaked
    records = load_records(cfg.out)
    assert records and all(r["status"] == "error" for r in records)
    assert all("invalid api key" in r["reason"] and "***" in r["reason"] for r in records)
    write_parquet(records, cfg.out / "records.parquet")
    jsonl = (cfg.out / "records.jsonl").read_text()
    table = pd.read_parquet(cfg.out / "records.parquet")
    cells = " ".join(str(v) for v in table.to_numpy().ravel())
    for form in FORMS:
        assert form not in jsonl and form not in cells, form


# ------------------------------------------------------- task init: names through a serialiser

def _table(path: Path, header: list[str], n: int = 60) -> Path:
    """A CSV with ``header`` (written by the csv writer, so newlines are quoted as in an
    attacker's file); two numeric columns and a 0/1 label last."""
    rng = np.random.default_rng(0)
    rows = {f"c{i}": rng.normal(size=n).round(3) for i in range(len(header) - 1)}
    rows["y"] = np.arange(n) % 2
    df = pd.DataFrame(rows)
    df.columns = header
    df.to_csv(path, index=False)
    return path


INJECTED = 'x\nname = "pwned"\n[classifier]\nmodel = "logistic-regression"\n#'


@pytest.mark.parametrize("case, header", [
    ("newline injection", [INJECTED, "b", "y"]),
    ("DEL character", ["a\x7fb", "b", "y"]),
    ("tab", ["a\tb", "b", "y"]),
    ("duplicate after trimming", ["age", " age", "y"]),
    ("duplicate", ["age", "age", "y"]),
    ("empty", ["", "b", "y"]),
])
def test_init_refuses_a_column_that_cannot_be_a_feature_name(tmp_path, capsys, case, header):
    data = tmp_path / "data.csv"
    if case == "duplicate":  # pandas would rename the second one age.1
        data.write_text("age,age,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60)))
    else:
        _table(data, header)
    out = tmp_path / "t" / "spec.toml"
    one_line_exit_2(cli(capsys, "task", "init", str(data), "--label", "y", "--out", str(out)),
                    str(data), "valid:")
    assert not out.exists()


def test_init_spec_of_hostile_values_and_file_name_loads_as_intended(tmp_path, capsys):
    """Label values, category words and the file name carry TOML and newlines: the spec holds
    them as strings that read back exactly, and no other key or table appears."""
    n = 60
    words = ['a"b\\', "c\x7fd", 'e\n[classifier]\nmodel = "mlp"']
    df = pd.DataFrame({"v": np.random.default_rng(1).normal(size=n).round(3),
                       "kind": [words[i % 3] for i in range(n)],
                       "y": ['yes\nname = "pwned"' if i % 2 else "no" for i in range(n)]})
    data = tmp_path / 'we\nird"].csv'
    df.to_csv(data, index=False)
    out = tmp_path / "t" / "spec.toml"
    code, err = cli(capsys, "task", "init", str(data), "--label", "y", "--out", str(out),
                    "--positive", 'yes\nname = "pwned"', "--name", "intended")
    assert code == 0, err
    spec = load_spec(out)
    assert spec.name == "intended" and spec.model == "random-forest" and spec.model_params == {}
    assert spec.model_path is None and spec.model_trusted == ()
    assert spec.loader_options["positive"] == 'yes\nname = "pwned"'
    assert spec.loader_options["path"] == '../we\nird"].csv'
    assert list(spec.schema["kind"].labels) == sorted(words)
    assert set(spec.raw) == {"name", "description", "dataset", "split", "classifier", "target",
                             "queries", "features"}
    lines = out.read_text().splitlines()  # no line the values tried to add
    assert lines.count("[classifier]") == 1 and 'model = "mlp"' not in lines
    assert not any(line.startswith('name = "pwned"') for line in lines)


@pytest.mark.parametrize("text", ["plain", 'q"uote', "back\\slash", "nl\nline", "del\x7f",
                                  "".join(map(chr, range(32))), "uni é ✓ \u2028"])
def test_toml_string_reads_back_exactly(text):
    from cfbench.tasks.init_spec import toml_string

    assert loads_toml(f"x = {toml_string(text)}", "t", "test")["x"] == text


# ----------------------------------------------- suite files: the validators of the flags

def _suite(tmp_path: Path, body: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text('task = "breast-cancer"\nmethods = ["nearest-neighbour"]\n' + body)
    return p


@pytest.mark.parametrize("body, key, shown, valid", [
    ("seeds = [-1]\n", "seeds", "[-1]", "from 0 to 4294967295"),
    ("seeds = [4294967296]\n", "seeds", "[4294967296]", "from 0 to 4294967295"),
    ('seeds = "0-20000"\n', "seeds", "20001 seeds", "at most 10000"),
    (f"seeds = [{', '.join(map(str, range(20001)))}]\n", "seeds", "20001 seeds", "at most 10000"),
    ('seeds = "0-10000000000"\n', "seeds", "10000000001 seeds", "at most 10000"),
    ("seeds = [true]\n", "seeds", "[True]", "integer seeds"),
    ("fit_timeout = -1\n", "fit_timeout", "-1", "more than 0"),
    ("timeout = inf\n", "timeout", "inf", "more than 0"),
    ("budget = 0\n", "budget", "0", "more than 0"),
    ("k = 99999999999999999999999\n", "k", "99999999999999999999999", "1 to 1000"),
    ("k = true\n", "k", "True", "1 to 1000"),
    ("n_queries = 0\n", "n_queries", "0", "1 to "),
    ("jobs = -2\n", "jobs", "-2", "1 to "),
    ("[augment]\nmax_per_class = 0\n", "augment.max_per_class", "0", "1 to "),
    ("[augment]\ntimeout = -5\n", "augment.timeout", "-5", "more than 0"),
])
def test_suite_settings_are_checked_like_the_flags(tmp_path, body, key, shown, valid):
    p = _suite(tmp_path, body)
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_suite(p)
    msg = str(err.value)
    assert f"{p}: {key}: " in msg and shown in msg and valid in msg and "\n" not in msg, msg
    assert time.perf_counter() - t0 < 5  # a huge range is counted, never built


@pytest.mark.parametrize("key, flag, value", [
    ("fit_timeout", "--fit-timeout", "-1"),
    ("k", "--k", "99999999999999999999999"),
    ("seeds", "--seeds", "0-20000"),
    ("jobs", "--jobs", "0"),
])
def test_flag_and_suite_key_share_one_validator(tmp_path, capsys, key, flag, value):
    """The same bad value gets the same words from the flag and from the suite key, and the
    command line stops with one line and exit 2 before writing anything."""
    out = tmp_path / "out"
    code, lines = cli(capsys, "run", "--task", "breast-cancer", flag, value, "--out", str(out))
    one_line_exit_2((code, lines), flag)
    from_flag = lines[0].split(f"argument {flag}: ", 1)[1]
    p = _suite(tmp_path, f"{key} = {value if key != 'seeds' else json.dumps(value)}\n")
    code, lines = cli(capsys, "run", "--config", str(p), "--out", str(out))
    one_line_exit_2((code, lines), f"{p}: {key}: ")
    from_file = lines[0].split(f"{p}: {key}: ", 1)[1]
    if key != "seeds":  # the flag's value is text, the file's a number
        from_flag = from_flag.replace(f"'{value}'", value)
    assert from_file == from_flag, lines
    assert not out.exists()


def _spec_copy(tmp_path: Path, name: str, file: str = "copy.toml") -> Path:
    """A copy of the breast-cancer spec named ``name``, at ``tmp_path/specs/file``."""
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    text = (TASKS / "breast-cancer.toml").read_text().replace('name = "breast-cancer"',
                                                             f'name = "{name}"')
    p = folder / file
    p.write_text(text)
    return p


def test_a_task_given_by_path_runs_in_a_folder_inside_out(tmp_path, monkeypatch):
    """``tasks = ["breast-cancer", "../specs/x.toml"]``: the second run's folder is the spec's
    name, inside --out (it was the path itself, which placed the run outside)."""
    _spec_copy(tmp_path, "my-cancer", "my-cancer-file.toml")
    (tmp_path / "suites").mkdir()
    monkeypatch.chdir(tmp_path / "suites")
    p = tmp_path / "suites" / "two.toml"
    p.write_text('tasks = ["breast-cancer", "../specs/my-cancer-file.toml"]\n'
                 'methods = ["nearest-neighbour"]\n')
    suite = load_suite(p)
    assert [(r.name, r.task) for r in suite.runs] == [
        ("breast-cancer", "breast-cancer"), ("my-cancer", "../specs/my-cancer-file.toml")]
    out = tmp_path / "out"
    for run in suite.runs:  # the command line places each run at --out / name
        assert (out / run.name).resolve().parent == out.resolve()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x" * (MAX_NAME + 1)])
def test_a_run_folder_name_cannot_escape_out(tmp_path, name):
    p = _suite(tmp_path, f'[[runs]]\nname = "{name}"\n')
    with pytest.raises(UserError, match=r"runs\[0\] name .*(not a valid run folder name|"
                                        r"characters long; valid: a run folder name)"):
        load_suite(p)


def test_a_user_spec_cannot_take_a_registered_name(tmp_path, capsys):
    spec = _spec_copy(tmp_path, "heart")
    out = tmp_path / "out"
    one_line_exit_2(cli(capsys, "run", "--task", str(spec), "--out", str(out)),
                    "'heart' is the name of the registered task", "valid:")
    p = _suite(tmp_path, "")
    p.write_text(f'tasks = ["{spec}"]\nmethods = ["nearest-neighbour"]\n')
    with pytest.raises(UserError, match="'heart' is the name of the registered task"):
        load_suite(p)
    builtin = available_specs()["heart"]
    assert resolve_spec(str(builtin)).name == "heart"  # the registered file itself, by its path
    assert not out.exists()


@pytest.mark.parametrize("value, ok", [("true", False), ("false", False), ("1.0", False),
                                       ("1", True), ("0", True), ('"opposite"', True)])
def test_target_class_is_type_checked(tmp_path, value, ok):
    text = (TASKS / "breast-cancer.toml").read_text()
    assert 'class = "opposite"' in text
    p = tmp_path / "t.toml"
    p.write_text(text.replace('name = "breast-cancer"', 'name = "t"')
                 .replace('class = "opposite"', f"class = {value}"))
    if ok:
        assert load_spec(p).target == (value.strip('"') if '"' in value else int(value))
    else:
        with pytest.raises(UserError, match="target.class: expected"):
            load_spec(p)


# ------------------------------------------- nested, huge and over-long inputs: one line

DEEP = 200_000
NESTED = {
    "arrays": "x = " + "[" * DEEP + "]" * DEEP + "\n",
    "inline tables": "x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
    "dotted key": "a" + ".a" * DEEP + " = 1\n",
    "table header": "[a" + ".a" * DEEP + "]\n",
    "moderately deep": "x = " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
}


@pytest.mark.parametrize("kind", list(NESTED))
@pytest.mark.parametrize("what", ["suite file", "task file"])
def test_deeply_nested_toml_is_one_line(tmp_path, kind, what):
    p = tmp_path / "deep.toml"
    p.write_text(NESTED[kind])
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        (load_suite if what == "suite file" else load_spec)(p)
    msg = str(err.value)
    assert str(p) in msg and ("nested" in msg or "dotted key" in msg) and "\n" not in msg, msg
    assert time.perf_counter() - t0 < 10


def test_deeply_nested_suite_is_exit_2_on_the_command_line(tmp_path, capsys):
    p = tmp_path / "deep.toml"
    p.write_text(NESTED["arrays"])
    one_line_exit_2(cli(capsys, "run", "--config", str(p)), str(p), "nested too deeply")


def test_huge_toml_is_one_line(tmp_path):
    p = tmp_path / "big.toml"
    p.write_text('task = "heart"\n' + "# padding\n" * 200_000)
    with pytest.raises(UserError, match=r"larger than 1 MiB; valid: at most 1 MiB"):
        load_suite(p)


@pytest.mark.parametrize("text, fragment", [
    ("[" * DEEP + "]" * DEEP, "nested too deeply"),
    ('{"a":' * (MAX_DEPTH + 5) + "1" + "}" * (MAX_DEPTH + 5), f"nested deeper than {MAX_DEPTH}"),
    ("[1, NaN]", "non-standard JSON token NaN"),
    ("{", "not valid JSON"),
    (" " * (MAX_JSON_BYTES + 1), "larger than 64 MiB"),
])
def test_hostile_json_is_one_line(text, fragment):
    with pytest.raises(UserError) as err:
        load_json_text(text, "run.json")
    assert str(err.value).startswith("run.json: ") and fragment in str(err.value)


def test_a_5000_character_task_name_is_one_line(tmp_path, capsys):
    p = _spec_copy(tmp_path, "x" * 5000)
    with pytest.raises(UserError, match=f"5000 characters long; valid: a task name of at most {MAX_NAME}"):
        load_spec(p)
    out = tmp_path / "out"
    one_line_exit_2(cli(capsys, "run", "--task", str(p), "--out", str(out)), "5000 characters")
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--k", "99999999999999999999999"),
                                         ("--n-queries", "10" * 20), ("--jobs", "9" * 30),
                                         ("--timeout", "1e308"), ("--budget", "nan")])
def test_absurd_numbers_stop_at_the_command_line(tmp_path, capsys, flag, value):
    out = tmp_path / "out"
    one_line_exit_2(cli(capsys, "run", "--task", "breast-cancer", flag, value, "--out", str(out)),
                    flag, "valid:")
    assert not out.exists()


def test_a_long_param_value_gives_a_short_distinct_log_name(tmp_path):
    from cfbench.execution.workerproc import log_name
    from cfbench.records.labels import method_label

    labels = [method_label("api-zeroshot", "default", {"prompt_dir": "p" * 5000 + end})
              for end in ("a", "b")]
    names = [log_name(label, 0) for label in labels]
    assert names[0] != names[1] and all(len(n.encode()) <= 255 for n in names)
    assert names[0].startswith("api-zeroshot") and names[0].endswith(".log")
    (tmp_path / names[0]).write_text("the file system accepts it")
    assert log_name("nice:sparsity", 3) == "nice_sparsity-seed3.log"  # short ones as before

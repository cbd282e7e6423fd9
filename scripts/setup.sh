#!/usr/bin/env bash
# Install what cfbench needs, once: the CPU build of torch where there is no CUDA GPU, then the
# project with every extra, at the exact versions CI uses (constraints.txt, made by
# scripts/freeze-constraints.py). Idempotent and fast when already set up: pip is skipped when
# the imports work and neither pyproject.toml nor the constraints have changed since the last
# successful install (a stamp).
#
#   CFBENCH_CONSTRAINTS=none scripts/setup.sh     resolve freely within pyproject.toml's ranges
#   CFBENCH_CONSTRAINTS=FILE scripts/setup.sh     another constraints file
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
STAMP=".setup.stamp"
TORCH="torch==2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1
CONSTRAINTS="${CFBENCH_CONSTRAINTS:-constraints.txt}"
if [ "$CONSTRAINTS" = none ]; then
    PIN=()
elif [ -f "$CONSTRAINTS" ]; then
    PIN=(-c "$CONSTRAINTS")
else
    echo "setup: CFBENCH_CONSTRAINTS=$CONSTRAINTS: no such file; valid: a constraints file, or none" >&2
    exit 2
fi
# `make run` needs every generator's extra; `make test` also the Ray executor's, for its tests
EXTRAS="all,dev"
[ "${1-}" = "test" ] && EXTRAS="all,dev,ray"

# `setup.sh test` also needs the system Chromium: the HTML report's browser test drives it through
# Playwright (the `dev` extra); never `playwright install`, which would download a browser.
if [ "${1-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the report's browser test"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

# the stamp: what was installed (pyproject.toml and the constraints, by hash), for which
# interpreter and with which extras
want="$("$PYTHON" - "$CONSTRAINTS" <<'PY'
import hashlib, sys
def sha(path):
    return "none" if path == "none" else hashlib.sha256(open(path, "rb").read()).hexdigest()
print(sha("pyproject.toml"), sha(sys.argv[1]), sys.executable)
PY
) $EXTRAS"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$PYTHON" - <<'PY' 2>/dev/null
import importlib.util, sys
need = ["cfbench", "cfbench_dice", "cfbench_cfnow", "cfbench_nice", "cfbench_llm", "torch",
        "dice_ml", "cfnow", "transformers", "peft", "imblearn", "pytest", "ruff", "jsonschema", "playwright", "skops",
        "hatchling"]
if any(importlib.util.find_spec(m) is None for m in need):
    sys.exit(1)
# the installed plugins must be this checkout's (an editable install of another clone is not)
import os
here = os.path.realpath("plugins")
sys.exit(not os.path.realpath(importlib.util.find_spec("cfbench_dice").origin).startswith(here))
PY
then
    echo "setup: already installed (delete $STAMP to force a reinstall)"
    exit 0
fi

# torch first, pinned, so no extra pulls an unpinned (multi-GB CUDA) build.  Where the package
# index serves only CUDA builds and there is no GPU, point CFBENCH_TORCH_INDEX at PyTorch's CPU
# wheel index (an extra index URL) to get the CPU build.
if "$PYTHON" -c 'import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    echo "setup: $TORCH already installed"
else
    index="${CFBENCH_TORCH_INDEX-}"
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "setup: CUDA GPU found (nvidia-smi): installing $TORCH"
        index=""
    else
        echo "setup: no CUDA GPU: installing the CPU build of $TORCH"
    fi
    if [ -n "$index" ]; then
        "$PYTHON" -m pip install -q ${PIN[@]+"${PIN[@]}"} "$TORCH" --extra-index-url "$index"
    else
        "$PYTHON" -m pip install -q ${PIN[@]+"${PIN[@]}"} "$TORCH"
    fi
fi
echo "setup: installing cfbench with its extras (pip install ${PIN[*]-} -e '.[$EXTRAS]')"
"$PYTHON" -m pip install -q ${PIN[@]+"${PIN[@]}"} -e ".[$EXTRAS]"
echo "$want" > "$STAMP"
echo "setup: done"

#!/usr/bin/env bash
# The one developer entry point.
#   ./dev.sh demo    set up, record SP and μP sample runs, open the dashboard   (README's main job)
#   ./dev.sh test    set up, then lint, type-check and run the whole test suite (README's test command)
#   ./dev.sh setup   only create .venv and install coordscope with every extra
set -euo pipefail
cd "$(dirname "$0")"
VENV="${COORDSCOPE_VENV:-.venv}"
PY="$VENV/bin/python"

say() { echo "dev.sh: $*" >&2; }

setup() {
    if [ ! -x "$PY" ]; then
        say "creating the virtual environment $VENV"
        python3 -m venv "$VENV"
    fi
    # The first install downloads torch (CPU) and the rest: pip shows what it fetches, with progress bars.
    # Later runs only refresh the editable install (about 15 s), quietly.
    local quiet=()
    if "$PY" -m pip show coordscope >/dev/null 2>&1; then
        quiet=(-q)
        say "refreshing the editable install of coordscope"
    else
        say "installing coordscope and its test dependencies (torch CPU, streamlit, ray, playwright, …): a few minutes"
    fi
    # constraints.txt pins torch: an unpinned install would pull a CUDA build and gigabytes of libraries.
    # editable_mode=strict: app/, probes/ and sample_models/ install as coordscope.app, … through a tree of
    # links under build/ that mypy can read (the default mode's import hooks are invisible to type checkers);
    # a file added to the checkout needs this step again, which every dev.sh command runs.
    "$PY" -m pip install "${quiet[@]}" --progress-bar on -c constraints.txt --config-settings editable_mode=strict \
        -e '.[test,ray,png,hf,lightning]'
    # mup declares torchvision and an unpinned torch, which we must not pull: install it without deps.
    [ ${#quiet[@]} -gt 0 ] || say "installing mup (without its dependencies)"
    "$PY" -m pip install -q --no-deps 'mup==1.0.0' pyyaml
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            say "installing Debian's chromium for the browser tests (apt-get, a minute or two)"
            (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
        else
            echo "dev.sh: chromium is missing; install it (apt-get install -y chromium) for the browser tests" >&2
            exit 1
        fi
    fi
}

case "${1:-}" in
    setup)
        setup ;;
    demo)
        setup
        shift
        exec "$VENV/bin/coordscope" demo "$@" ;;
    test)
        setup
        shift
        "$VENV/bin/ruff" check coordscope app probes sample_models tests benchmarks
        "$VENV/bin/mypy" -p coordscope -p coordscope.app -p coordscope.probes -p coordscope.sample_models
        # pytest exits 5 when it collected no tests: that is a failure too, and set -e propagates it.
        OMP_NUM_THREADS=1 "$PY" -m pytest "$@" ;;
    *)
        echo "usage: ./dev.sh demo|test|setup" >&2
        exit 2 ;;
esac

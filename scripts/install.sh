#!/usr/bin/env bash
# Create venv/ if missing, then let scripts/install.py install what is missing.
# Shared by webui.sh and run_tests.sh (webui.bat does the same steps itself).
#   bash scripts/install.sh [--test] [-- webui flags]
# python_cmd picks the Python that creates venv/ (as in A1111's webui-user.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_cmd="${python_cmd:-python3}"

if [ ! -x venv/bin/python ]; then
    if [ -e venv ]; then
        echo "Easel: error: venv/ exists but has no bin/python; delete venv/ and start again" >&2
        exit 1
    fi
    if ! command -v "$python_cmd" >/dev/null; then
        echo "Easel: error: '$python_cmd' not found; install Python 3.10+ or set python_cmd" >&2
        exit 1
    fi
    echo "Easel: creating venv/ with $("$python_cmd" -V 2>&1)"
    if ! "$python_cmd" -m venv venv; then
        rm -rf venv  # a half-made venv would fool the check above next time
        echo "Easel: error: '$python_cmd -m venv' failed (on Debian/Ubuntu: apt install python3-venv)" >&2
        exit 1
    fi
fi

exec venv/bin/python scripts/install.py "$@"

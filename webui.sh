#!/usr/bin/env bash
# Easel launcher: install what is missing, then start the web UI.
#   ./webui.sh [flags]        then open http://127.0.0.1:7860
#   ./webui.sh --exit         install only, do not start
# COMMANDLINE_ARGS (environment or webui-user.sh) adds flags; app.py merges it
# with shlex quoting rules (modules/cmd_args.py), so it is not repeated here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# A1111 users keep their settings in webui-user.sh; read it the same way.
if [ -f webui-user.sh ]; then
    # shellcheck disable=SC1091
    source ./webui-user.sh
fi
# webui-user.sh may set these without export; the installer runs as a child.
export COMMANDLINE_ARGS="${COMMANDLINE_ARGS:-}" python_cmd="${python_cmd:-python3}"
if [ -n "${TORCH_COMMAND:-}" ]; then export TORCH_COMMAND; fi
if [ -n "${XFORMERS_PACKAGE:-}" ]; then export XFORMERS_PACKAGE; fi

bash scripts/install.sh -- "$@"

# Never reach the network at run time: no model hub, no analytics.
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False

set -f  # split COMMANDLINE_ARGS into words without expanding globs
for arg in "$@" $COMMANDLINE_ARGS; do
    if [ "$arg" = "--exit" ]; then
        echo "Easel: --exit given, not starting"
        exit 0
    fi
done

exec venv/bin/python app.py "$@"

#!/usr/bin/env bash
# Install what the tests need, then run pytest.
#   ./run_tests.sh                 -> pytest tests/ -q
#   ./run_tests.sh tests/test_x.py -k name -x   (arguments go to pytest)
# The exit code is pytest's (5 = no tests collected counts as a failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bash scripts/install.sh --test

# Browser tests drive the system Chromium through Playwright.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Easel: installing Chromium for the browser tests (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "Easel: warning: /usr/bin/chromium is missing and apt-get cannot run as this user;" \
             "browser tests will not find a browser" >&2
    fi
fi

export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
unset COMMANDLINE_ARGS  # a developer's launch flags must not change test results

if [ "$#" -eq 0 ]; then
    set -- tests/ -q
fi
exec venv/bin/python -m pytest "$@"

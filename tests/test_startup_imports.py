"""The page answers before torch is imported: launch-to-page time is a goal (README, Performance).

torch alone takes 1.5-3.5 s to import on the build machine; the model loader
imports it once the server listens. A module imported while the page is built
(a tab, a built-in script) that imports torch at its top silently costs that
time on every start, so this runs the real page build in a fresh interpreter
and checks what it imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BUILD_PAGE = """
import json, sys
import app
from modules import extensions
app.create_app(extensions.parse_args_with_extensions(sys.argv[1:]))
heavy = sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'diffusers', 'transformers', 'accelerate', 'safetensors'})
print(json.dumps(heavy))
"""


def test_building_the_page_and_api_imports_no_ml_library(tmp_path):
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", BUILD_PAGE, "--api", "--data-dir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

"""The launch scripts in the real repository, with the venv already installed.

These run webui.sh and run_tests.sh for real. With everything installed
they must not call pip: the installer says "packages up to date" only when
it ran no pip command, and "installing ..." before any pip command.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import install  # noqa: E402  (scripts/install.py, the shared installer)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash launchers")


def launcher_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("COMMANDLINE_ARGS", "TORCH_COMMAND", "XFORMERS_PACKAGE")}
    env.update(extra)
    return env


def run(args, **extra_env):
    return subprocess.run(args, cwd=REPO, env=launcher_env(**extra_env),
                          capture_output=True, text=True, timeout=300)


def test_webui_exit_installs_nothing_when_the_venv_is_ready_and_does_not_start():
    result = run(["bash", "webui.sh", "--exit"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "packages up to date" in result.stdout
    assert "installing" not in result.stdout
    assert "--exit given, not starting" in result.stdout
    # the second start takes the stamp fast path and says the same
    again = run(["bash", "webui.sh", "--exit"])
    assert again.returncode == 0 and "packages up to date" in again.stdout


def test_exit_from_commandline_args_is_honoured():
    result = run(["bash", "webui.sh"], COMMANDLINE_ARGS="--api --exit")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--exit given, not starting" in result.stdout


def test_stamp_records_requirements_and_torch_command():
    requirements = (REPO / "requirements.txt").read_bytes()
    default = install.fingerprint(requirements, install.DEFAULT_TORCH_COMMAND)
    assert install.fingerprint(requirements, "pip install torch==2.13.0 --index-url X") != default
    assert install.fingerprint(requirements + b"\nnewpackage\n", install.DEFAULT_TORCH_COMMAND) != default


def test_only_missing_or_wrong_version_requirements_are_reported(tmp_path):
    installed_pytest = __import__("pytest").__version__
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\n"
                   f"pytest=={installed_pytest}  # pinned, installed\n"
                   "pytest<1.0\n"
                   "easel-no-such-package==1.0\n"
                   "--find-links somewhere\n"
                   "pytest; python_version < '3'\n")
    lines = install.read_requirements(req)
    assert install.unmet(lines) == ["pytest<1.0", "easel-no-such-package==1.0"]
    assert install.is_torch("torch==2.13.0") and not install.is_torch("torchsde")


def test_run_tests_passes_arguments_to_pytest_and_returns_its_exit_code():
    # No test matches: pytest exits 5, which must reach the caller.
    result = run(["bash", "run_tests.sh", "tests/test_cmd_args.py", "-q", "-k", "no_test_has_this_name"])
    assert "packages up to date" in result.stdout
    assert result.returncode == 5, result.stdout + result.stderr

"""scripts/install.py: requirements marked `# --no-deps` are installed without their declared dependencies.

spandrel declares torchvision, which would pull another torch into the venv;
the marked line keeps pip from resolving it (no pip runs here: it is recorded).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import install  # noqa: E402


def test_marked_lines_are_read_apart(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\ntorch==2.13.0\nspandrel==0.4.2  # --no-deps\neinops==0.8.2  # needed by spandrel\n",
                   encoding="utf8")
    assert install.read_requirements(req) == ["torch==2.13.0", "spandrel==0.4.2", "einops==0.8.2"]
    assert install.read_requirements(req, no_deps=True) == ["spandrel==0.4.2"]
    assert install.read_requirements(req, no_deps=False) == ["torch==2.13.0", "einops==0.8.2"]


def test_missing_marked_package_is_installed_with_no_deps(tmp_path, monkeypatch):
    req = tmp_path / "requirements.txt"
    req.write_text("spandrel==0.4.2  # --no-deps\neinops==0.8.2\nalready==1.0\n", encoding="utf8")
    calls, installed = [], {"already==1.0"}

    def fake_pip(args, quiet=True):
        calls.append(args)
        installed.update(a for a in args if "==" in a)

    monkeypatch.setattr(install, "pip", fake_pip)
    monkeypatch.setattr(install, "unmet", lambda lines: [line for line in lines if line not in installed])
    install.install_requirements(req, skip_torch=True)
    assert calls == [["install", "einops==0.8.2"], ["install", "--no-deps", "spandrel==0.4.2"]]


def test_repository_requirements_install_spandrel_without_torchvision():
    assert "spandrel==0.4.2" in install.read_requirements(REPO / "requirements.txt", no_deps=True)
    assert not any(line.startswith("torchvision") for line in install.read_requirements(REPO / "requirements.txt"))

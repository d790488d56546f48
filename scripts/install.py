"""Install what Easel needs into the venv this script runs in, and nothing more.

Run by scripts/install.sh (webui.sh, run_tests.sh) and webui.bat as
    venv/bin/python scripts/install.py [--test] -- [webui flags]

A stamp file in the venv records the hash of requirements.txt and
TORCH_COMMAND (and of requirements-test.txt with --test). When the stamp
matches, pip is not run at all, so the second start goes straight to the
page. When it does not match, installed versions are compared with the pins
first, and pip runs only for what is missing or at the wrong version.

Environment:
    TORCH_COMMAND      pip command for torch (default "pip install torch==2.13.0"),
                       run as "python -m $TORCH_COMMAND" like A1111
    XFORMERS_PACKAGE   pip name for xformers (default "xformers"); installed with
                       --xformers on CUDA machines only, without letting pip
                       replace torch
    COMMANDLINE_ARGS   webui flags, read for --xformers
"""

import argparse
import hashlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # a fresh venv has only pip, which carries its own copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TORCH_COMMAND = "pip install torch==2.13.0"
MIN_PYTHON = (3, 10)


def say(message):
    print(f"Easel: {message}", flush=True)


def fail(message):
    print(f"Easel: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---- reading requirement files ---------------------------------------------

NO_DEPS_MARK = "# --no-deps"


def read_requirements(path, no_deps=None):
    """Requirement lines of a file, without comments, blanks and pip options.

    no_deps=True keeps only the lines marked `# --no-deps`, False only the
    others, None all of them.
    """
    lines = []
    for raw in Path(path).read_text(encoding="utf8").splitlines():
        line, _, comment = raw.partition(" #")
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        marked = ("#" + comment).strip().startswith(NO_DEPS_MARK)
        if no_deps is None or no_deps == marked:
            lines.append(line)
    return lines


def is_torch(line):
    try:
        return Requirement(line).name.lower() == "torch"
    except InvalidRequirement:
        return False


def unmet(requirement_lines):
    """The lines whose package is missing or at a version the line does not allow."""
    missing = []
    for line in requirement_lines:
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            fail(f"cannot read requirement {line!r}: {e}")
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            missing.append(line)
    return missing


# ---- stamps ------------------------------------------------------------------

def stamp_path(name):
    return Path(sys.prefix) / f".easel-installed-{name}"


def fingerprint(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf8"))
        digest.update(b"\0")
    return digest.hexdigest()


def stamp_matches(name, value):
    path = stamp_path(name)
    return path.exists() and path.read_text(encoding="utf8").strip() == value


def write_stamp(name, value):
    stamp_path(name).write_text(value + "\n", encoding="utf8")


# ---- running pip -------------------------------------------------------------

PIP_RAN = []  # set once pip has run, for the closing message


def pip(args, quiet=True):
    PIP_RAN.append(args)
    command = [sys.executable, "-m", "pip", *args] + (["-q"] if quiet else [])
    if subprocess.run(command).returncode != 0:
        fail("pip failed: " + " ".join(shlex.quote(c) for c in command))


def install_torch(torch_command, torch_line):
    """Install torch when missing; the default command also when the version is wrong."""
    if torch_command == DEFAULT_TORCH_COMMAND:
        needed = unmet([torch_line]) if torch_line else unmet(["torch"])
    else:  # a custom command chooses its own build; only its absence triggers it
        needed = unmet(["torch"])
    if not needed:
        return
    words = shlex.split(torch_command)
    if words[:1] != ["pip"]:
        fail(f"TORCH_COMMAND must start with 'pip', got {torch_command!r}")
    say(f"installing torch: {torch_command}")
    pip(words[1:], quiet=False)  # large download: keep pip's progress bar
    if unmet(["torch"]):
        fail(f"torch is still not installed after: {torch_command}")


def install_requirements(path, skip_torch):
    lines = [line for line in read_requirements(path) if not (skip_torch and is_torch(line))]
    missing = unmet(lines)
    if missing:
        say(f"installing {len(missing)} package(s) from {path.name}: {', '.join(missing)}")
        # Only the missing lines: pip then cannot touch torch or anything already right.
        # Lines marked "# --no-deps" declare dependencies Easel must not get (spandrel -> torchvision,
        # which would pull another torch); their real needs are listed as lines of their own.
        no_deps = set(read_requirements(path, no_deps=True))
        plain = [line for line in missing if line not in no_deps]
        if plain:
            pip(["install", *plain])
        if no_deps & set(missing):
            pip(["install", "--no-deps", *[line for line in missing if line in no_deps]])
        still = unmet(lines)
        if still:
            fail(f"still missing after pip install: {', '.join(still)}")


def ensure_runtime():
    requirements = REPO / "requirements.txt"
    torch_command = os.environ.get("TORCH_COMMAND", "").strip() or DEFAULT_TORCH_COMMAND
    value = fingerprint(requirements.read_bytes(), torch_command)
    if stamp_matches("runtime", value):
        return
    torch_line = next((line for line in read_requirements(requirements) if is_torch(line)), None)
    install_torch(torch_command, torch_line)
    install_requirements(requirements, skip_torch=True)
    write_stamp("runtime", value)


def ensure_test():
    requirements = REPO / "requirements-test.txt"
    value = fingerprint(requirements.read_bytes())
    if stamp_matches("test", value):
        return
    install_requirements(requirements, skip_torch=False)
    write_stamp("test", value)


# ---- xformers ----------------------------------------------------------------

def cuda_gpu_present():
    """True when an NVIDIA GPU is usable: nvidia-smi lists one, or torch sees CUDA."""
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if result.returncode == 0 and "GPU" in result.stdout:
            return True
    import torch
    return torch.cuda.is_available()


def ensure_xformers():
    if not unmet(["xformers"]):
        return
    if not cuda_gpu_present():
        say("--xformers ignored: no CUDA GPU found (PyTorch attention is used)")
        return
    package = os.environ.get("XFORMERS_PACKAGE", "xformers")
    say(f"installing {package} (--xformers)")
    pip(["install", "--no-deps", package])  # --no-deps: never let xformers swap torch
    check = subprocess.run([sys.executable, "-c", "import xformers.ops"], capture_output=True, text=True)
    if check.returncode != 0:
        say(f"warning: {package} is installed but does not load with this torch; "
            "PyTorch attention will be used. Set XFORMERS_PACKAGE to a matching version.")


def wants_xformers(webui_args):
    sys.path.insert(0, str(REPO))
    from modules.cmd_args import parse_known_early  # stdlib-only module
    return parse_known_early(webui_args).xformers


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/install.py")
    parser.add_argument("--test", action="store_true", help="also install requirements-test.txt")
    parser.add_argument("webui_args", nargs=argparse.REMAINDER, help="-- followed by webui flags")
    args = parser.parse_args(argv)
    webui_args = args.webui_args[1:] if args.webui_args[:1] == ["--"] else args.webui_args

    if sys.version_info < MIN_PYTHON:
        fail(f"Easel needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; venv/ uses {sys.version.split()[0]}. "
             "Delete venv/ and start again with python_cmd=python3.11 (or newer).")

    ensure_runtime()
    if args.test:
        ensure_test()
    if wants_xformers(webui_args):
        ensure_xformers()
    say("packages installed" if PIP_RAN else "packages up to date")


if __name__ == "__main__":
    main()

"""Managing installed extensions (the Extensions tab's logic, no Gradio): list, enable, install, update, remove.

Every change goes through `check_access(cmd_opts)` first: when the server can
be reached from other machines (--listen, a --server-name that is not
loopback, --share) anyone who can open the page could install and run code,
so changes are refused unless --enable-insecure-extension-access is given
(A1111's rule).

Git is used through the `git` command (subprocess, with a timeout and no
credential prompt), never through a library. Enabled state lives in
config.json as A1111 keeps it: `disabled_extensions` (names) and
`disable_all_extensions` ("none", "extra", "all"); it takes effect at the
next start (modules.restart), because a loaded extension cannot be unloaded.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from modules import cmd_args, extensions

GIT_TIMEOUT_S = 30            # local git commands (log, rev-parse)
GIT_NETWORK_TIMEOUT_S = 300   # clone, fetch, pull
_lock = threading.Lock()      # one change at a time: two installs of one name must not race

# git URLs we clone: scheme URLs, scp-like "user@host:path", or an absolute local path
_URL_SCHEMES = ("https://", "http://", "git://", "ssh://", "file://")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:[^\s]+$")
_BAD_NAME_CHARS = re.compile(r'[/\\<>:"|?*\x00-\x1f]')


class ExtensionManagerError(ValueError):
    """A refused or failed operation; the message is meant for the page as it is."""


class AccessDenied(ExtensionManagerError):
    pass


# ---- the guard ---------------------------------------------------------------------

def access_denied_reason(cmd_opts) -> str | None:
    """Why extensions cannot be changed from the page, or None when they can."""
    if getattr(cmd_opts, "enable_insecure_extension_access", False):
        return None
    if not cmd_args.listens_beyond_loopback(cmd_opts):
        return None
    if getattr(cmd_opts, "share", False):
        how = "--share"
    elif getattr(cmd_opts, "server_name", None):
        how = f"--server-name {cmd_opts.server_name}"
    else:
        how = "--listen"
    return (f"Changing extensions is disabled because the server is reachable from other machines ({how}): "
            f"anyone who can open this page could install and run code. Start Easel with "
            f"--enable-insecure-extension-access to allow it anyway.")


def check_access(cmd_opts) -> None:
    reason = access_denied_reason(cmd_opts)
    if reason:
        raise AccessDenied(reason)


# ---- git ----------------------------------------------------------------------------

def _git(args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> subprocess.CompletedProcess:
    # GIT_TERMINAL_PROMPT=0: a private or mistyped URL fails at once instead of waiting for a password
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", LC_ALL="C")
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ExtensionManagerError("git is not installed (the `git` command was not found)") from None
    except subprocess.TimeoutExpired:
        raise ExtensionManagerError(f"git {args[0]} did not finish within {timeout:.0f} s") from None


def _git_ok(args, cwd=None, timeout=GIT_TIMEOUT_S) -> str:
    done = _git(args, cwd, timeout)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise ExtensionManagerError(f"git {args[0]} failed: {' '.join(message[-3:]) or f'exit code {done.returncode}'}")
    return done.stdout.strip()


def is_git_checkout(path: Path) -> bool:
    # The folder itself must hold .git: extensions/ may sit inside Easel's own checkout,
    # and git would otherwise answer with Easel's commit for a plain folder.
    return (Path(path) / ".git").exists()


def git_details(path: Path) -> dict:
    """remote, branch, commit, short version and commit date of a git checkout (None where unknown)."""
    info = {"remote": None, "branch": None, "commit": None, "version": None, "commit_date": None}
    if not is_git_checkout(path):
        return info
    try:
        done = _git(["log", "-1", "--format=%H%n%cI"], cwd=path)
        if done.returncode == 0 and done.stdout.strip():
            commit, _, date = done.stdout.strip().partition("\n")
            info.update(commit=commit, version=commit[:8], commit_date=date or None)
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=path)
        if branch.returncode == 0:
            info["branch"] = branch.stdout.strip() if branch.stdout.strip() != "HEAD" else None   # detached: no branch
        remote = _git(["config", "--get", "remote.origin.url"], cwd=path)
        if remote.returncode == 0:
            info["remote"] = remote.stdout.strip() or None
    except ExtensionManagerError:
        pass   # no git: the table shows what it can
    return info


# ---- listing -------------------------------------------------------------------------

@dataclass
class ExtensionInfo:
    name: str
    path: Path
    display_name: str
    is_builtin: bool
    enabled: bool               # as config.json says (what the next start will do, flags aside)
    loaded: bool                # running in this process now
    load_seconds: float | None
    remote: str | None = None
    branch: str | None = None
    commit: str | None = None
    version: str | None = None
    commit_date: str | None = None
    errors: list = field(default_factory=list)   # "what: message" reported at load or since


def list_extensions(paths, opts, with_git: bool = True) -> list[ExtensionInfo]:
    """Every extension folder on disk now (built-in first), with its config state and load report."""
    disabled = set(getattr(opts, "disabled_extensions", None) or [])
    loaded = {e.name: e for e in extensions.loaded}
    errors: dict[str, list] = {}
    for error in list(extensions.errors):
        errors.setdefault(error.extension, []).append(f"{error.what}: {error.message}")
    found = _folders(paths)
    result = []
    for ext in found:
        running = loaded.get(ext.name)
        info = ExtensionInfo(name=ext.name, path=ext.path, display_name=ext.display_name, is_builtin=ext.is_builtin,
                             enabled=ext.name not in disabled, loaded=running is not None,
                             load_seconds=running.load_seconds if running is not None else None,
                             errors=errors.get(ext.name, []))
        if with_git:
            details = git_details(ext.path)
            for key in ("remote", "branch", "commit", "version", "commit_date"):
                setattr(info, key, details[key])
        result.append(info)
    return result


def _folders(paths) -> list[extensions.Extension]:
    """Every extension folder on disk now, built-in first (a bad metadata.ini was reported at start-up)."""
    return (extensions.list_folder(Path(paths.extensions_builtin_dir), True, report=False)
            + extensions.list_folder(Path(paths.extensions_dir), False, report=False))


def find(paths, name: str) -> extensions.Extension:
    for ext in _folders(paths):
        if ext.name == name:
            return ext
    raise ExtensionManagerError(f"no extension named {name!r} is installed")


# ---- enabled state -----------------------------------------------------------------------

def set_enabled(paths, opts, cmd_opts, disabled_names, disable_all: str = "none") -> list[str]:
    """Write config.json's disabled_extensions and disable_all_extensions; returns the disabled names."""
    check_access(cmd_opts)
    if disable_all not in extensions.DISABLE_ALL_CHOICES:
        allowed = ", ".join(extensions.DISABLE_ALL_CHOICES)
        raise ExtensionManagerError(f"disable_all_extensions must be one of {allowed}, got {disable_all!r}")
    known = {e.name for e in list_extensions(paths, opts, with_git=False)}
    names = sorted({str(n) for n in disabled_names})
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ExtensionManagerError(f"no extension named {', '.join(map(repr, unknown))} is installed")
    with _lock:
        extensions.register_options(opts)
        opts.set("disabled_extensions", names)
        opts.set("disable_all_extensions", disable_all)
        opts.save(paths.config_file)
    return names


# ---- install -----------------------------------------------------------------------------

@dataclass
class InstallResult:
    name: str
    path: Path
    commit: str | None
    install_ran: bool
    install_ok: bool
    install_output: str


def check_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise ExtensionManagerError("URL: enter the address of a git repository")
    if any(c.isspace() for c in url) or url.startswith("-"):
        raise ExtensionManagerError(f"URL: {url!r} is not a git repository address")
    if url.startswith(_URL_SCHEMES) or _SCP_LIKE.match(url):
        return url
    if os.path.isabs(url) and os.path.isdir(url):
        return url
    raise ExtensionManagerError(f"URL: {url!r} is not a git repository address "
                                f"(expected https://..., ssh://..., git@host:path, file://... or a local folder)")


def name_from_url(url: str) -> str:
    tail = re.split(r"[/:\\]", url.rstrip("/\\"))[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def check_name(paths, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ExtensionManagerError("Folder name: could not tell a folder name from the URL; enter one")
    if name in (".", "..") or _BAD_NAME_CHARS.search(name) or name.startswith((".", "-")) or len(name) > 100:
        raise ExtensionManagerError(f"Folder name: {name!r} is not allowed (no path separators, no leading '.' or "
                                    f"'-', no <>:\"|?*, at most 100 characters)")
    if (Path(paths.extensions_dir) / name).exists() or (Path(paths.extensions_builtin_dir) / name).exists():
        raise ExtensionManagerError(f"Folder name: extensions/{name} already exists")
    return name


def check_branch(branch: str) -> str | None:
    branch = (branch or "").strip()
    if not branch:
        return None
    if branch.startswith("-") or any(c.isspace() for c in branch) or ".." in branch:
        raise ExtensionManagerError(f"Branch: {branch!r} is not a branch name")
    return branch


def install(paths, cmd_opts, url: str, branch: str = "", dirname: str = "") -> InstallResult:
    """git clone URL into extensions/NAME, then run its install.py; the extension loads at the next start."""
    check_access(cmd_opts)
    url = check_url(url)
    branch = check_branch(branch)
    root = Path(paths.extensions_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _lock:
        name = check_name(paths, dirname or name_from_url(url))
        # clone next to the target under a dot-name (discovery skips those), so a failed or
        # interrupted clone never leaves a half extension that would load at the next start
        tmp = root / f".install-{name}-{uuid.uuid4().hex[:8]}"
        args = ["clone", "--quiet", *(["--branch", branch] if branch else []), "--", url, str(tmp)]
        try:
            _git_ok(args, timeout=GIT_NETWORK_TIMEOUT_S)
            target = root / name
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                _rmtree(tmp)
    ext = extensions.Extension(name, target)
    output: list[str] = []
    ran = (target / "install.py").is_file()
    ok = extensions.run_install(ext, "installed from the Extensions tab", output=output) if ran else True
    text = "\n".join(o for o in output if o).strip()
    return InstallResult(name, target, git_details(target)["commit"], ran, ok, text)


# ---- updates ----------------------------------------------------------------------------

@dataclass
class UpdateStatus:
    name: str
    state: str          # "behind" | "up to date" | "no remote" | "not git" | "error"
    message: str
    behind: int = 0


def check_for_update(paths, cmd_opts, name: str) -> UpdateStatus:
    """git fetch, then count the commits the checkout is behind its upstream branch."""
    check_access(cmd_opts)
    ext = find(paths, name)
    if not is_git_checkout(ext.path):
        return UpdateStatus(name, "not git", f"{name}: not a git checkout, so it cannot be updated from here")
    if not git_details(ext.path)["remote"]:
        return UpdateStatus(name, "no remote", f"{name}: has no remote (origin) to check for updates")
    try:
        _git_ok(["fetch", "--quiet", "origin"], cwd=ext.path, timeout=GIT_NETWORK_TIMEOUT_S)
        upstream = _git(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"], cwd=ext.path)
        if upstream.returncode != 0:
            return UpdateStatus(name, "error", f"{name}: the checkout has no upstream branch "
                                               f"(detached or local branch); update it with git by hand")
        behind = int(_git_ok(["rev-list", "--count", "HEAD..@{u}"], cwd=ext.path) or 0)
    except ExtensionManagerError as exc:
        return UpdateStatus(name, "error", f"{name}: {exc}")
    if behind:
        return UpdateStatus(name, "behind", f"{name}: {behind} new commit(s) on {upstream.stdout.strip()}", behind)
    return UpdateStatus(name, "up to date", f"{name}: up to date with {upstream.stdout.strip()}")


def update(paths, cmd_opts, name: str) -> str:
    """git pull --ff-only; a changed install.py runs at the next start (extensions.install_needed)."""
    check_access(cmd_opts)
    ext = find(paths, name)
    if not is_git_checkout(ext.path):
        raise ExtensionManagerError(f"{name}: not a git checkout, so it cannot be updated from here")
    if not git_details(ext.path)["remote"]:
        raise ExtensionManagerError(f"{name}: has no remote (origin) to update from")
    with _lock:
        before = git_details(ext.path)["commit"]
        _git_ok(["pull", "--ff-only", "--quiet"], cwd=ext.path, timeout=GIT_NETWORK_TIMEOUT_S)
        after = git_details(ext.path)["commit"]
    if before == after:
        return f"{name}: already up to date ({(after or '')[:8]})"
    return f"{name}: updated {(before or '')[:8]} -> {(after or '')[:8]}; restart to load the new version"


# ---- remove ------------------------------------------------------------------------------

def remove(paths, cmd_opts, name: str) -> str:
    """Delete extensions/NAME (never a built-in one, never anything outside extensions/)."""
    check_access(cmd_opts)
    ext = find(paths, name)
    if ext.is_builtin:
        raise ExtensionManagerError(f"{name}: built-in extensions cannot be removed (disable it instead)")
    root = Path(paths.extensions_dir).resolve()
    target = root / ext.name
    inside = target.is_symlink() or target.resolve().parent == root
    if ext.name in ("", ".", "..") or _BAD_NAME_CHARS.search(ext.name) or not inside:
        raise ExtensionManagerError(f"{name}: not a folder directly inside {root}")
    with _lock:
        if target.is_symlink():      # a linked extension: remove the link, never what it points to
            target.unlink()
        else:
            _rmtree(target)
    return f"{name}: removed; restart to unload it"


def _rmtree(path: Path) -> None:
    def make_writable_and_retry(func, failed, _exc):
        # git's object files are read-only; on Windows they cannot be deleted as they are
        os.chmod(failed, stat.S_IWRITE)
        func(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:   # onerror: deprecated since 3.12, the only hook before it
        shutil.rmtree(path, onerror=make_writable_and_retry)

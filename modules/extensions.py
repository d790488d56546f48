"""Installed extensions: find them, order them, preload, install, and report their errors.

An extension is a folder in Paths.extensions_dir (the data dir's extensions/)
or Paths.extensions_builtin_dir, holding any of scripts/*.py, preload.py,
install.py, javascript/*.js, style.css, metadata.ini (REFERENCE section 6).

Start-up (app.py):
    cmd_opts = parse_args_with_extensions(argv)   # preload.py adds flags first
    exts = discover(paths, cmd_opts, disabled)    # enabled ones, load order applied
    run_installs(exts)                            # install.py where needed
    modules.scripts.load_scripts(exts)            # import scripts/*.py, timed

Every failure of an extension (import, ui(), hook, callback, install) goes
through `report_error`: logged with the extension's name and traceback, kept
in `errors` for the page notice, and the extension's part is skipped.
"""
from __future__ import annotations

import configparser
import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 300
INSTALL_MARKER = ".easel-installed"     # holds the sha256 of the install.py that last ran successfully


@dataclass
class Extension:
    name: str                 # folder name (what config.json's disabled_extensions lists)
    path: Path
    is_builtin: bool = False
    enabled: bool = True
    display_name: str = ""    # metadata.ini [Extension] Name, else the folder name
    requires: list = field(default_factory=list)   # other extensions' names (metadata.ini Requires)
    before: list = field(default_factory=list)     # load before these (metadata.ini Before)
    after: list = field(default_factory=list)      # load after these (metadata.ini After)
    load_seconds: float = 0.0

    def files(self, folder: str, suffix: str) -> list[Path]:
        where = self.path / folder if folder else self.path
        if not where.is_dir():
            return []
        return sorted(p for p in where.iterdir() if p.is_file() and p.name.endswith(suffix))

    @property
    def script_files(self) -> list[Path]:
        return self.files("scripts", ".py")

    @property
    def javascript_files(self) -> list[Path]:
        return self.files("javascript", ".js")

    @property
    def style_file(self) -> Path | None:
        css = self.path / "style.css"
        return css if css.is_file() else None

    def git_info(self) -> dict:
        """remote/branch/commit read from .git files (no git process, no network)."""
        git = self.path / ".git"
        info = {"remote": None, "branch": None, "commit_hash": None}
        if not git.is_dir():
            return info
        try:
            head = (git / "HEAD").read_text().strip()
            if head.startswith("ref: "):
                ref = head[5:]
                info["branch"] = ref.rsplit("/", 1)[-1]
                ref_file = git / ref
                info["commit_hash"] = ref_file.read_text().strip() if ref_file.exists() else None
            else:
                info["commit_hash"] = head
            config = configparser.ConfigParser(strict=False)
            config.read(git / "config")
            info["remote"] = config.get('remote "origin"', "url", fallback=None)
        except (OSError, configparser.Error):
            pass
        return info


# ---- errors ------------------------------------------------------------------

@dataclass
class ExtensionError:
    extension: str
    what: str
    message: str
    traceback: str
    at: float


errors: list[ExtensionError] = []
_errors_lock = threading.Lock()
loaded: list[Extension] = []        # enabled extensions, in load order (filled by app start-up)
installed: list[Extension] = []     # every extension folder found, enabled or not


def report_error(extension: str, what: str, exc: BaseException) -> ExtensionError:
    """Log a failure of an extension with its traceback and keep it for the page notice."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    error = ExtensionError(extension, what, f"{type(exc).__name__}: {exc}", text, time.time())
    with _errors_lock:
        errors.append(error)
        del errors[:-100]   # keep the newest 100
    log.error("extension %s: error in %s (skipped):\n%s", extension, what, text)
    return error


def name_for_path(path) -> str:
    """The extension owning a file (the folder under extensions/), else the file name."""
    path = os.path.abspath(str(path))
    for ext in installed:
        root = os.path.abspath(ext.path)
        if path == root or path.startswith(root + os.sep):
            return ext.name
    parts = Path(path).parts
    for marker in ("extensions", "extensions-builtin"):
        if marker in parts:
            index = len(parts) - 1 - parts[::-1].index(marker)
            if index + 1 < len(parts):
                return parts[index + 1]
    return os.path.basename(path)


# ---- discovery -----------------------------------------------------------------

def read_metadata(ext: Extension, report: bool = True) -> None:
    """metadata.ini [Extension]: Name, Requires, Before, After (comma-separated extension names)."""
    ini = ext.path / "metadata.ini"
    ext.display_name = ext.name
    if not ini.is_file():
        return
    config = configparser.ConfigParser()
    try:
        config.read(ini, encoding="utf-8")
    except configparser.Error as exc:
        if report:   # the Extensions tab lists folders on every page load: report once, at start-up
            report_error(ext.name, "metadata.ini", exc)
        return

    def names(key):
        value = config.get("Extension", key, fallback="") or ""
        return [n.strip() for n in value.replace(" ", ",").split(",") if n.strip()]

    ext.display_name = config.get("Extension", "Name", fallback=ext.name) or ext.name
    ext.requires, ext.before, ext.after = names("Requires"), names("Before"), names("After")


def list_folder(folder: Path, builtin: bool, report: bool = True) -> list[Extension]:
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if entry.is_dir() and not entry.name.startswith("."):
            ext = Extension(entry.name, entry, is_builtin=builtin)
            read_metadata(ext, report)
            found.append(ext)
    return found


def discover(paths, cmd_opts, disabled=(), found: list | None = None, disable_all: str = "none") -> list[Extension]:
    """The enabled extensions in load order (every folder found is appended to `found`).

    --disable-all-extensions (or config.json disable_all_extensions "all"):
    none; --disable-extra-extensions (or "extra"): built-in ones only; names
    in `disabled` (config.json disabled_extensions) are skipped.
    An extension whose metadata.ini Requires a missing or disabled extension
    is reported and skipped.
    """
    everything = list_folder(Path(paths.extensions_builtin_dir), True) + list_folder(Path(paths.extensions_dir), False)
    disabled = set(disabled or ())
    switch = effective_switch(cmd_opts, disable_all)
    disable_all, disable_extra = switch == "all", switch == "extra"
    for ext in everything:
        ext.enabled = ext.name not in disabled
        if disable_all:
            ext.enabled = False
        elif disable_extra and not ext.is_builtin:
            ext.enabled = False
    if found is not None:
        found.extend(everything)
    enabled = [e for e in everything if e.enabled]
    known = {e.name for e in enabled} | {e.display_name for e in enabled}
    usable = []
    for ext in enabled:
        missing = [r for r in ext.requires if r not in known]
        if missing:
            report_error(ext.name, "metadata.ini Requires",
                         RuntimeError(f"needs extension(s) {', '.join(missing)}, which are not installed or enabled"))
            continue
        usable.append(ext)
    return order(usable)


def order(exts: list[Extension]) -> list[Extension]:
    """Sort by name, then honour Before/After/Requires (stable topological order; cycles keep name order)."""
    by_name = {}
    for ext in exts:
        by_name[ext.name] = ext
        by_name.setdefault(ext.display_name, ext)
    after = {ext.name: set() for ext in exts}     # ext -> extensions that must load first
    for ext in exts:
        for other in ext.after + ext.requires:
            if other in by_name and by_name[other] is not ext:
                after[ext.name].add(by_name[other].name)
        for other in ext.before:
            if other in by_name and by_name[other] is not ext:
                after[by_name[other].name].add(ext.name)
    result, done = [], set()
    pending = list(exts)
    while pending:
        ready = [e for e in pending if after[e.name] <= done]
        if not ready:  # a cycle: load the rest in name order rather than not at all
            log.warning("extensions: load order cycle among %s; using name order", ", ".join(e.name for e in pending))
            ready = pending[:1]
        chosen = ready[0]
        result.append(chosen)
        done.add(chosen.name)
        pending.remove(chosen)
    return result


# ---- preload.py ----------------------------------------------------------------

def run_preloads(parser, exts: list[Extension]) -> None:
    """Call preload(parser) of every extension that has preload.py, so its flags are known."""
    from modules import scripts

    for ext in exts:
        preload = ext.path / "preload.py"
        if not preload.is_file():
            continue
        try:
            module = scripts.load_module(preload, f"easel_ext_{_safe(ext.name)}_preload")
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception as exc:
            report_error(ext.name, "preload.py", exc)


def parse_args_with_extensions(argv=None, environ=None):
    """A1111's start-up order: early flags -> extensions' preload(parser) -> strict parse."""
    from modules import cmd_args, paths as paths_module

    parser = cmd_args.make_parser()
    early = cmd_args.parse_known_early(argv, parser, environ)
    paths = paths_module.from_cmd_opts(early)
    run_preloads(parser, discover(paths, early, disabled_in_config(paths), disable_all=disable_all_in_config(paths)))
    return cmd_args.parse_args(argv, parser, environ)


DISABLE_ALL_CHOICES = ("none", "extra", "all")   # config.json disable_all_extensions (A1111's values)


def effective_switch(cmd_opts, disable_all: str = "none") -> str:
    """"all", "extra" or "none": the flags win over config.json's disable_all_extensions."""
    if getattr(cmd_opts, "disable_all_extensions", False):
        return "all"
    if getattr(cmd_opts, "disable_extra_extensions", False):
        return "extra"
    return disable_all if disable_all in DISABLE_ALL_CHOICES else "none"


def _config_value(paths, key: str, default):
    import json

    try:
        with open(paths.config_file, encoding="utf-8") as f:
            return json.load(f).get(key, default)
    except (OSError, ValueError, AttributeError):
        return default


def disabled_in_config(paths) -> list[str]:
    """config.json's disabled_extensions, read before the settings object exists."""
    value = _config_value(paths, "disabled_extensions", [])
    return [str(v) for v in value] if isinstance(value, list) else []


def disable_all_in_config(paths) -> str:
    """config.json's disable_all_extensions ("none", "extra" or "all"), read before the settings object exists."""
    value = _config_value(paths, "disable_all_extensions", "none")
    return value if value in DISABLE_ALL_CHOICES else "none"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


# ---- install.py ----------------------------------------------------------------

def _requirements_missing(ext: Extension) -> list[str]:
    """Distributions named in the extension's requirements.txt that are not installed."""
    from importlib import metadata

    req = ext.path / "requirements.txt"
    if not req.is_file():
        return []
    missing = []
    for line in req.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def install_needed(ext: Extension) -> str | None:
    """Why install.py must run now (never ran, changed since, or requirements missing), or None."""
    script = ext.path / "install.py"
    if not script.is_file():
        return None
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    marker = ext.path / INSTALL_MARKER
    if not marker.is_file():
        return "first start with this extension"
    if marker.read_text(encoding="utf-8", errors="replace").strip() != digest:
        return "install.py changed"
    missing = _requirements_missing(ext)
    if missing:
        return f"requirements missing: {', '.join(missing)}"
    return None


def run_install(ext: Extension, reason: str = "", timeout: float = INSTALL_TIMEOUT_S,
                output: list | None = None) -> bool:
    """Run install.py in its folder with this Python; its output is printed (and appended to `output`). True on success."""
    from modules import paths as paths_module

    script = ext.path / "install.py"
    print(f"Installing extension {ext.name} ({reason or 'requested'}): running install.py", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(paths_module.repo_root()), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=ext.path, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or "") + (exc.stderr or "") if isinstance(exc.stdout, str) else ""
        if text:
            print(text, flush=True)
        if output is not None:
            output.append(text + f"\ninstall.py did not finish within {timeout:.0f} s")
        report_error(ext.name, "install.py", TimeoutError(f"install.py did not finish within {timeout:.0f} s"))
        return False
    text = (done.stdout + done.stderr).strip()
    if output is not None:
        output.append(text)
    if text:
        print("\n".join(f"  [{ext.name}] {line}" for line in text.splitlines()), flush=True)
    if done.returncode != 0:
        report_error(ext.name, "install.py", RuntimeError(f"install.py exited with {done.returncode}:\n{text[-2000:]}"))
        if output is not None:
            output.append(f"install.py exited with {done.returncode}")
        return False
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    (ext.path / INSTALL_MARKER).write_text(digest + "\n", encoding="utf-8")
    print(f"Installed extension {ext.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return True


def run_installs(exts: list[Extension]) -> None:
    for ext in exts:
        try:
            reason = install_needed(ext)
            if reason:
                run_install(ext, reason)
        except Exception as exc:
            report_error(ext.name, "install.py", exc)


# ---- page assets ---------------------------------------------------------------

def page_head() -> str:
    """<script> tags for every enabled extension's javascript/*.js (A1111 puts them in the page head)."""
    parts = []
    for ext in loaded:
        for js in ext.javascript_files:
            try:
                code = js.read_text(encoding="utf-8")
            except OSError as exc:
                report_error(ext.name, f"javascript/{js.name}", exc)
                continue
            # "</script" would end the tag early; "<\/script" means the same inside JavaScript strings
            code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
            parts.append(f'<script type="text/javascript" data-extension="{ext.name}/javascript/{js.name}">\n'
                         f"{code}\n</script>")
    return "\n".join(parts)


def page_css() -> str:
    parts = []
    for ext in loaded:
        css = ext.style_file
        if css is not None:
            try:
                parts.append(f"/* {ext.name}/style.css */\n" + css.read_text(encoding="utf-8"))
            except OSError as exc:
                report_error(ext.name, "style.css", exc)
    return "\n".join(parts)


def print_load_times(cmd_opts=None, disable_all: str = "none") -> None:
    if getattr(cmd_opts, "disable_all_extensions", False):
        print("--disable-all-extensions: no extensions are loaded", flush=True)
    elif getattr(cmd_opts, "disable_extra_extensions", False):
        print("--disable-extra-extensions: only built-in extensions are loaded", flush=True)
    elif disable_all in ("all", "extra"):
        effect = "no extensions are loaded" if disable_all == "all" else "only built-in extensions are loaded"
        print(f'config.json disable_all_extensions is "{disable_all}": {effect}', flush=True)
    if loaded:
        times = ", ".join(f"{e.name}: {e.load_seconds:.2f} s" for e in loaded)
        print(f"Extensions loaded ({len(loaded)}): {times}", flush=True)


def register_options(opts) -> None:
    """A1111's extension settings (no section: kept in config.json, not shown among the Settings)."""
    from modules.options import OptionInfo

    if "disabled_extensions" not in opts.data_labels:
        opts.add_option("disabled_extensions", OptionInfo([], "Disable these extensions"))
    if "disable_all_extensions" not in opts.data_labels:
        opts.add_option("disable_all_extensions", OptionInfo(
            "none", "Disable all extensions (preserves the list of disabled extensions)",
            component_args={"choices": ["none", "extra", "all"]}))

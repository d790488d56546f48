"""The Extensions tab's logic (modules.extension_manager) against real git repositories in tmp_path.

No network: the "remote" is a bare repository made here and cloned by path or
file:// URL, as a user would clone from GitHub. The tab itself is driven in
Chromium in tests/test_browser_extensions.py.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from modules import cmd_args, extension_manager as manager, extensions, options, paths as paths_module

GIT_ID = ["-c", "user.name=Easel Test", "-c", "user.email=test@easel.invalid", "-c", "init.defaultBranch=main"]

INSTALL_PY = """from pathlib import Path
marker = Path(__file__).parent / "installed.txt"
marker.write_text("yes")
print("hello from install.py of git-ext")
"""
SCRIPT_PY = '''"""A tab from an extension installed by git (test fixture)."""
import gradio as gr

from modules import script_callbacks

VERSION = 1


def on_ui_tabs():
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown("Hello from the git tab", elem_id="git_tab_hello")
    return [(tab, "Git Tab", "git_tab")]


script_callbacks.on_ui_tabs(on_ui_tabs)
'''


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_remote(root: Path, name: str = "git-ext") -> tuple[Path, Path]:
    """(work tree, bare repository) of an extension with a tab script and an install.py, one commit on main."""
    work = root / f"{name}-work"
    (work / "scripts").mkdir(parents=True)
    (work / "scripts" / "git_tab.py").write_text(SCRIPT_PY)
    (work / "install.py").write_text(INSTALL_PY)
    git("init", "-q", str(work))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    bare = root / f"{name}.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    git("remote", "add", "origin", str(bare), cwd=work)
    return work, bare


def push_commit(work: Path, message: str = "second") -> str:
    script = work / "scripts" / "git_tab.py"
    script.write_text(script.read_text().replace("VERSION = 1", "VERSION = 2"))
    git("commit", "-q", "-am", message, cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def flags(*extra: str):
    return cmd_args.parse_args(list(extra), environ={})


@pytest.fixture
def env(tmp_path):
    """Paths (data dir and repo in tmp_path, so built-in extensions can be made too) and fresh settings."""
    cmd_opts = flags("--data-dir", str(tmp_path / "data"))
    paths = paths_module.from_cmd_opts(cmd_opts, repo=tmp_path / "repo")
    paths.ensure_dirs()
    opts = options.Options()
    opts.load(paths.config_file)
    extensions.register_options(opts)
    return SimpleNamespace(root=tmp_path, paths=paths, opts=opts, cmd_opts=cmd_opts,
                           ext_dir=Path(paths.extensions_dir))


def leftovers(ext_dir: Path) -> list[str]:
    return [p.name for p in ext_dir.iterdir() if p.name.startswith(".install-")]


# ---- install --------------------------------------------------------------------------

def test_install_from_local_repo_clones_runs_install_py_and_is_listed(env):
    work, bare = make_remote(env.root)
    done = manager.install(env.paths, env.cmd_opts, bare.as_uri())
    target = env.ext_dir / "git-ext"
    assert done.name == "git-ext" and done.path == target
    assert (target / "scripts" / "git_tab.py").is_file()
    assert done.install_ran and done.install_ok
    assert "hello from install.py of git-ext" in done.install_output
    assert (target / "installed.txt").read_text() == "yes"                 # ran in its own folder
    assert extensions.install_needed(extensions.Extension("git-ext", target)) is None   # not again at start
    assert done.commit == git("rev-parse", "HEAD", cwd=work)

    listed = {e.name: e for e in manager.list_extensions(env.paths, env.opts)}
    row = listed["git-ext"]
    assert row.remote == bare.as_uri() and row.branch == "main"
    assert row.commit == done.commit and row.version == done.commit[:8] and row.commit_date
    assert row.enabled and not row.loaded and not row.is_builtin
    assert leftovers(env.ext_dir) == []
    # and the next start finds and enables it
    assert [e.name for e in extensions.discover(env.paths, env.cmd_opts)] == ["git-ext"]


def test_install_with_branch_and_folder_name(env):
    work, bare = make_remote(env.root)
    git("checkout", "-q", "-b", "dev", cwd=work)
    (work / "DEV").write_text("dev branch")
    git("add", "DEV", cwd=work)
    git("commit", "-q", "-m", "dev", cwd=work)
    git("push", "-q", "origin", "dev", cwd=work)
    done = manager.install(env.paths, env.cmd_opts, str(bare), branch="dev", dirname="my-ext")
    assert done.path == env.ext_dir / "my-ext"
    assert (done.path / "DEV").read_text() == "dev branch"
    row = {e.name: e for e in manager.list_extensions(env.paths, env.opts)}["my-ext"]
    assert row.branch == "dev"


@pytest.mark.parametrize("url, dirname, branch, message", [
    ("", "", "", "URL: enter the address"),
    ("   ", "", "", "URL: enter the address"),
    ("not a url", "", "", "is not a git repository address"),
    ("relative/path", "", "", "is not a git repository address"),
    ("--upload-pack=touch /tmp/x", "", "", "is not a git repository address"),
    ("https://example.invalid/a/b.git", "../escape", "", "Folder name: '../escape' is not allowed"),
    ("https://example.invalid/a/b.git", "a/b", "", "Folder name: 'a/b' is not allowed"),
    ("https://example.invalid/a/b.git", "..", "", "Folder name: '..' is not allowed"),
    ("https://example.invalid/a/b.git", ".hidden", "", "Folder name: '.hidden' is not allowed"),
    ("https://example.invalid/a/b.git", "a\\b", "", "is not allowed"),
    ("file:///", "", "", "could not tell a folder name"),
    ("https://example.invalid/a/b.git", "", "--exec=x", "Branch: '--exec=x' is not a branch name"),
])
def test_bad_urls_names_and_branches_are_refused_with_the_field_named(env, url, dirname, branch, message):
    with pytest.raises(manager.ExtensionManagerError, match=None) as failed:
        manager.install(env.paths, env.cmd_opts, url, branch, dirname)
    assert message in str(failed.value)
    assert list(env.ext_dir.iterdir()) == []


def test_existing_folder_name_is_refused_and_kept(env):
    _, bare = make_remote(env.root)
    (env.ext_dir / "git-ext").mkdir()
    (env.ext_dir / "git-ext" / "mine.txt").write_text("keep me")
    with pytest.raises(manager.ExtensionManagerError, match="extensions/git-ext already exists"):
        manager.install(env.paths, env.cmd_opts, bare.as_uri())
    assert (env.ext_dir / "git-ext" / "mine.txt").read_text() == "keep me"


def test_failed_clone_says_why_and_leaves_nothing(env):
    make_remote(env.root)
    missing = (env.root / "no-such-repo.git").as_uri()
    with pytest.raises(manager.ExtensionManagerError, match="git clone failed"):
        manager.install(env.paths, env.cmd_opts, missing)
    with pytest.raises(manager.ExtensionManagerError, match="git clone failed"):
        manager.install(env.paths, env.cmd_opts, (env.root / "git-ext.git").as_uri(), branch="no-such-branch")
    assert list(env.ext_dir.iterdir()) == []


def test_failing_install_py_is_reported_with_its_output(env):
    work, bare = make_remote(env.root)
    (work / "install.py").write_text("print('about to fail')\nraise SystemExit(3)\n")
    git("commit", "-q", "-am", "failing install", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    done = manager.install(env.paths, env.cmd_opts, bare.as_uri())
    assert done.install_ran and not done.install_ok
    assert "about to fail" in done.install_output and "exited with 3" in done.install_output
    assert any(e.extension == "git-ext" and e.what == "install.py" for e in extensions.errors)
    extensions.errors.clear()


# ---- updates ---------------------------------------------------------------------------

def test_check_for_update_and_update_after_a_new_commit(env):
    work, bare = make_remote(env.root)
    manager.install(env.paths, env.cmd_opts, bare.as_uri())
    status = manager.check_for_update(env.paths, env.cmd_opts, "git-ext")
    assert status.state == "up to date", status.message

    new_commit = push_commit(work)
    status = manager.check_for_update(env.paths, env.cmd_opts, "git-ext")
    assert status.state == "behind" and status.behind == 1, status.message
    script = env.ext_dir / "git-ext" / "scripts" / "git_tab.py"
    assert "VERSION = 1" in script.read_text()             # checking does not change the files

    message = manager.update(env.paths, env.cmd_opts, "git-ext")
    assert f"-> {new_commit[:8]}" in message
    assert "VERSION = 2" in script.read_text()
    assert {e.name: e for e in manager.list_extensions(env.paths, env.opts)}["git-ext"].commit == new_commit
    assert manager.check_for_update(env.paths, env.cmd_opts, "git-ext").state == "up to date"
    assert "already up to date" in manager.update(env.paths, env.cmd_opts, "git-ext")


def test_update_refuses_a_diverged_checkout(env):
    work, bare = make_remote(env.root)
    manager.install(env.paths, env.cmd_opts, bare.as_uri())
    push_commit(work)
    local = env.ext_dir / "git-ext"
    (local / "local.txt").write_text("local change")
    git("add", "local.txt", cwd=local)
    git("commit", "-q", "-m", "local", cwd=local)
    with pytest.raises(manager.ExtensionManagerError, match="git pull failed"):
        manager.update(env.paths, env.cmd_opts, "git-ext")
    assert (local / "local.txt").is_file()


def test_extensions_without_git_or_remote_say_so(env):
    (env.ext_dir / "plain" / "scripts").mkdir(parents=True)
    local_only = env.ext_dir / "local-only"
    local_only.mkdir()
    (local_only / "a.txt").write_text("a")
    git("init", "-q", str(local_only))
    git("add", ".", cwd=local_only)
    git("commit", "-q", "-m", "one", cwd=local_only)

    plain = manager.check_for_update(env.paths, env.cmd_opts, "plain")
    assert plain.state == "not git" and "not a git checkout" in plain.message
    local = manager.check_for_update(env.paths, env.cmd_opts, "local-only")
    assert local.state == "no remote" and "has no remote" in local.message
    with pytest.raises(manager.ExtensionManagerError, match="not a git checkout"):
        manager.update(env.paths, env.cmd_opts, "plain")
    with pytest.raises(manager.ExtensionManagerError, match="has no remote"):
        manager.update(env.paths, env.cmd_opts, "local-only")
    rows = {e.name: e for e in manager.list_extensions(env.paths, env.opts)}
    # a plain folder inside a git checkout (as extensions/ is inside Easel's) has no git details of its own
    assert rows["plain"].commit is None and rows["plain"].remote is None
    assert rows["local-only"].remote is None and rows["local-only"].version
    with pytest.raises(manager.ExtensionManagerError, match="no extension named 'ghost'"):
        manager.check_for_update(env.paths, env.cmd_opts, "ghost")


# ---- remove ----------------------------------------------------------------------------

def test_remove_deletes_the_folder_with_its_git_objects(env):
    _, bare = make_remote(env.root)
    manager.install(env.paths, env.cmd_opts, bare.as_uri())
    assert "removed" in manager.remove(env.paths, env.cmd_opts, "git-ext")
    assert not (env.ext_dir / "git-ext").exists()
    assert bare.is_dir()                                      # the source is untouched
    assert "git-ext" not in {e.name for e in manager.list_extensions(env.paths, env.opts)}
    with pytest.raises(manager.ExtensionManagerError, match="no extension named 'git-ext'"):
        manager.remove(env.paths, env.cmd_opts, "git-ext")


def test_remove_refuses_builtins_and_names_outside_extensions(env):
    builtin = Path(env.paths.extensions_builtin_dir) / "core-ext"
    (builtin / "scripts").mkdir(parents=True)
    with pytest.raises(manager.ExtensionManagerError, match="built-in extensions cannot be removed"):
        manager.remove(env.paths, env.cmd_opts, "core-ext")
    assert builtin.is_dir()
    (env.root / "data" / "precious").mkdir()
    for name in ("..", "../precious", "", "extensions"):
        with pytest.raises(manager.ExtensionManagerError, match="no extension named"):
            manager.remove(env.paths, env.cmd_opts, name)
    assert (env.root / "data" / "precious").is_dir()


def test_remove_of_a_linked_extension_removes_only_the_link(env):
    outside = env.root / "elsewhere"
    (outside / "scripts").mkdir(parents=True)
    (outside / "scripts" / "keep.py").write_text("# keep")
    os.symlink(outside, env.ext_dir / "linked", target_is_directory=True)
    manager.remove(env.paths, env.cmd_opts, "linked")
    assert not (env.ext_dir / "linked").exists() and (outside / "scripts" / "keep.py").is_file()


# ---- the guard -------------------------------------------------------------------------

REMOTE_FLAGS = [["--listen"], ["--share"], ["--server-name", "0.0.0.0"], ["--server-name", "192.168.1.20"]]


@pytest.mark.parametrize("extra", REMOTE_FLAGS, ids=lambda f: " ".join(f))
def test_guard_refuses_every_change_when_reachable_from_other_machines(env, extra):
    _, bare = make_remote(env.root)
    manager.install(env.paths, env.cmd_opts, bare.as_uri())       # installed while loopback-only
    exposed = flags("--data-dir", str(env.root / "data"), *extra)
    reason = manager.access_denied_reason(exposed)
    assert reason and extra[0] in reason and "--enable-insecure-extension-access" in reason
    attempts = [
        lambda: manager.install(env.paths, exposed, bare.as_uri(), dirname="second"),
        lambda: manager.update(env.paths, exposed, "git-ext"),
        lambda: manager.check_for_update(env.paths, exposed, "git-ext"),
        lambda: manager.remove(env.paths, exposed, "git-ext"),
        lambda: manager.set_enabled(env.paths, env.opts, exposed, ["git-ext"]),
    ]
    for attempt in attempts:
        with pytest.raises(manager.AccessDenied, match="Changing extensions is disabled"):
            attempt()
    assert (env.ext_dir / "git-ext").is_dir() and not (env.ext_dir / "second").exists()
    assert not Path(env.paths.config_file).exists() or \
        "git-ext" not in json.loads(Path(env.paths.config_file).read_text()).get("disabled_extensions", [])


@pytest.mark.parametrize("extra", [*REMOTE_FLAGS, ["--server-name", "localhost"], ["--server-name", "127.0.0.1"]],
                         ids=lambda f: " ".join(f))
def test_guard_allows_changes_with_insecure_access_flag_or_on_loopback(env, extra):
    _, bare = make_remote(env.root)
    insecure = "--listen" in extra or "--share" in extra or extra[-1] not in ("localhost", "127.0.0.1")
    opened = flags("--data-dir", str(env.root / "data"), *extra,
                   *(["--enable-insecure-extension-access"] if insecure else []))
    assert manager.access_denied_reason(opened) is None
    manager.install(env.paths, opened, bare.as_uri())
    assert manager.set_enabled(env.paths, env.opts, opened, ["git-ext"]) == ["git-ext"]
    manager.remove(env.paths, opened, "git-ext")
    assert not (env.ext_dir / "git-ext").exists()


# ---- enabled state ---------------------------------------------------------------------

def _make_extensions(env):
    for name in ("alpha", "beta"):
        (env.ext_dir / name / "scripts").mkdir(parents=True)
    (Path(env.paths.extensions_builtin_dir) / "core-ext" / "scripts").mkdir(parents=True)


def test_enabled_state_is_written_to_config_json_and_honoured_at_the_next_start(env):
    _make_extensions(env)
    assert manager.set_enabled(env.paths, env.opts, env.cmd_opts, ["beta"]) == ["beta"]
    saved = json.loads(Path(env.paths.config_file).read_text())
    assert saved["disabled_extensions"] == ["beta"] and saved["disable_all_extensions"] == "none"
    assert extensions.disabled_in_config(env.paths) == ["beta"]

    # the next start reads config.json the way app.py does
    restarted = options.Options()
    restarted.load(env.paths.config_file)
    extensions.register_options(restarted)
    found = []
    enabled = extensions.discover(env.paths, env.cmd_opts, restarted.disabled_extensions, found,
                                  disable_all=restarted.disable_all_extensions)
    assert [e.name for e in enabled] == ["core-ext", "alpha"]
    assert {e.name: e.enabled for e in found} == {"core-ext": True, "alpha": True, "beta": False}
    rows = {e.name: e.enabled for e in manager.list_extensions(env.paths, restarted)}
    assert rows == {"core-ext": True, "alpha": True, "beta": False}

    manager.set_enabled(env.paths, env.opts, env.cmd_opts, [])          # enable again
    assert json.loads(Path(env.paths.config_file).read_text())["disabled_extensions"] == []
    assert [e.name for e in extensions.discover(env.paths, env.cmd_opts, extensions.disabled_in_config(env.paths))] \
        == ["core-ext", "alpha", "beta"]


@pytest.mark.parametrize("switch, expected", [("none", ["core-ext", "alpha", "beta"]), ("extra", ["core-ext"]),
                                              ("all", [])])
def test_disable_all_extensions_in_config_is_honoured_like_the_flags(env, switch, expected):
    _make_extensions(env)
    manager.set_enabled(env.paths, env.opts, env.cmd_opts, [], disable_all=switch)
    assert extensions.disable_all_in_config(env.paths) == switch
    enabled = extensions.discover(env.paths, env.cmd_opts, extensions.disabled_in_config(env.paths),
                                  disable_all=extensions.disable_all_in_config(env.paths))
    assert [e.name for e in enabled] == expected
    # the flags win over config.json
    assert extensions.discover(env.paths, flags("--disable-all-extensions"), disable_all=switch) == []


def test_set_enabled_rejects_unknown_names_and_switch_values(env):
    _make_extensions(env)
    with pytest.raises(manager.ExtensionManagerError, match="no extension named 'ghost'"):
        manager.set_enabled(env.paths, env.opts, env.cmd_opts, ["alpha", "ghost"])
    with pytest.raises(manager.ExtensionManagerError, match="disable_all_extensions must be one of"):
        manager.set_enabled(env.paths, env.opts, env.cmd_opts, [], disable_all="some")
    assert not Path(env.paths.config_file).exists()



def test_listing_on_every_page_load_does_not_repeat_start_up_errors(env):
    bad = env.ext_dir / "bad-meta"
    bad.mkdir()
    (bad / "metadata.ini").write_text("this is not [ini\n")
    extensions.errors.clear()
    extensions.discover(env.paths, env.cmd_opts)                          # start-up reports it once
    assert [e.what for e in extensions.errors] == ["metadata.ini"]
    for _ in range(3):
        rows = manager.list_extensions(env.paths, env.opts)
    assert len(extensions.errors) == 1
    assert rows[0].name == "bad-meta" and rows[0].errors == ["metadata.ini: " + extensions.errors[0].message]
    extensions.errors.clear()

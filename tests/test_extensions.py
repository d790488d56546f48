"""A1111 extensions dropped into extensions/: preload flags, install.py, scripts, callbacks, isolation.

The fixture extensions in tests/fixtures/extensions/ are copied into a
temporary data dir's extensions/ and Easel is started the way app.py starts
it (preload -> strict flags -> create_app), page and API together, on a tiny
model. Everything is checked through the HTTP API and the page's Gradio
config, as a client or a browser sees it.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.factories import BUILTIN_SCRIPT_LISTING
from tests.test_api_support import LOAD_TIMEOUT, LOOPBACK, make_checkpoints, small

FIXTURES = Path(__file__).parent / "fixtures" / "extensions"
EXAMPLE = Path(__file__).parent.parent / "extensions" / "easel-example-prompt-suffix"   # shipped to authors


def _start(root: Path, flags: list[str], load: bool = True):
    import app as easel_app
    from fastapi.testclient import TestClient

    from modules import extensions

    ckpts = make_checkpoints(root / "ckpt", 1)
    argv = [*flags, "--data-dir", str(root / "data"), "--ckpt-dir", str(root / "ckpt"), "--ckpt", str(ckpts[0])]
    cmd_opts = extensions.parse_args_with_extensions(argv, environ={})
    app, shared = easel_app.create_app(cmd_opts)
    if load:
        job = shared.models.request_load(ckpts[0].name)
        assert job.wait(LOAD_TIMEOUT) and job.status == "done", f"model load: {job.status} {job.error}"
    return app, shared, TestClient(app, base_url=LOOPBACK)


def _reset_extension_state():
    """Forget the fixture extensions so later test modules run without them."""
    from modules import extensions, script_callbacks, scripts

    script_callbacks.clear_callbacks()
    scripts.scripts_data.clear()
    scripts.initialize_runners()
    extensions.loaded.clear()
    extensions.installed.clear()
    extensions.errors.clear()


@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    root = tmp_path_factory.mktemp("easel-ext")
    shutil.copytree(FIXTURES, root / "data" / "extensions")
    shutil.copytree(EXAMPLE, root / "data" / "extensions" / EXAMPLE.name)
    app, shared, client = _start(root, ["--api", "--rewriter-suffix-file", "sketch.txt"])
    yield root, shared, client
    client.close()
    shared.queue.shutdown()
    _reset_extension_state()


def _module(extension: str, stem: str):
    return sys.modules[f"easel_ext_{extension.replace('-', '_')}_{stem}"]


def _errors_of(extension: str) -> list:
    from modules import extensions

    return [e for e in extensions.errors if e.extension == extension]


# ---- start-up -------------------------------------------------------------------

def test_preload_flag_is_parsed_into_cmd_opts(easel):
    _, shared, _ = easel
    assert shared.cmd_opts.rewriter_suffix_file == "sketch.txt"


def test_unknown_flag_still_rejected_when_extension_disabled(tmp_path):
    from modules import extensions

    shutil.copytree(FIXTURES / "prompt-rewriter", tmp_path / "extensions" / "prompt-rewriter")
    with pytest.raises(SystemExit) as exited:
        extensions.parse_args_with_extensions(["--data-dir", str(tmp_path), "--disable-all-extensions",
                                               "--rewriter-suffix-file", "x"], environ={})
    assert exited.value.code == 2


def test_install_py_ran_once_with_its_output_shown(easel, capsys):
    from modules import extensions

    root, _, _ = easel
    folder = root / "data" / "extensions" / "prompt-rewriter"
    assert (folder / "install-count.txt").read_text() == "1"
    extensions.run_installs(extensions.loaded)            # a second start: nothing to do
    assert (folder / "install-count.txt").read_text() == "1"
    (folder / "requirements.txt").write_text("easel-package-that-does-not-exist\n")
    try:
        extensions.run_installs(extensions.loaded)        # requirements missing: install.py runs again
    finally:
        (folder / "requirements.txt").unlink()
    assert (folder / "install-count.txt").read_text() == "2"
    assert "prompt-rewriter install ran (2)" in capsys.readouterr().out


def test_scripts_listed_in_lower_case(easel):
    _, _, client = easel
    listed = client.get("/sdapi/v1/scripts").json()
    assert {"prompt rewriter", "seed copies", "bad process", "bad ui"} <= set(listed["txt2img"])
    assert "prompt rewriter" in listed["img2img"]
    extensions = {e["name"]: e for e in client.get("/sdapi/v1/extensions").json()}
    assert set(extensions) == {"broken", "prompt-rewriter", "selectable-run", "tab-and-saver", EXAMPLE.name}
    assert all(e["enabled"] for e in extensions.values())


def test_callbacks_for_app_start_and_model_load_ran(easel):
    saver = _module("tab-and-saver", "saver")
    assert len(saver.started) == 1 and saver.started[0][0] is not None      # (demo, app)
    assert len(saver.loaded_models) == 1 and saver.loaded_models[0].unet is not None


# ---- generation -----------------------------------------------------------------

def _generate(client, **fields):
    response = client.post("/sdapi/v1/txt2img", json=small(**fields))
    assert response.status_code == 200, response.text
    return response.json(), json.loads(response.json()["info"])


def test_always_on_script_rewrites_prompts_and_writes_infotext(easel):
    _, _, client = easel
    _, info = _generate(client, seed=7, steps=1, alwayson_scripts={"Prompt Rewriter": {"args": [True, "bold"]}})
    assert info["all_prompts"] == ["a red circle, as pencil sketch, bold"]   # file chosen by the preload flag
    assert "Rewriter: rw1" in info["infotexts"][0]
    assert info["infotexts"][0].startswith("a red circle, as pencil sketch, bold\n")


def test_always_on_script_defaults_and_its_setting(easel):
    _, _, client = easel
    assert client.get("/sdapi/v1/options").json()["rewriter_tag"] == "rw1"
    assert client.post("/sdapi/v1/options", json={"rewriter_tag": "rw2"}).status_code == 200
    _, info = _generate(client, seed=8, steps=1)                      # no alwayson_scripts: ui() defaults
    assert info["all_prompts"] == ["a red circle, as pencil sketch"]
    assert "Rewriter: rw2" in info["infotexts"][0]
    _, info = _generate(client, seed=8, steps=1, alwayson_scripts={"prompt rewriter": {"args": [False]}})
    assert info["all_prompts"] == ["a red circle"] and "Rewriter" not in info["infotexts"][0]


def test_shipped_example_extension_appends_its_suffix(easel):
    _, _, client = easel
    _, info = _generate(client, seed=9, steps=1, alwayson_scripts={
        "prompt rewriter": {"args": [False]}, "prompt suffix": {"args": [True, "at dusk"]}})
    assert info["all_prompts"] == ["a red circle, at dusk"]
    assert "Prompt suffix: at dusk" in info["infotexts"][0]
    _, info = _generate(client, seed=9, steps=1, alwayson_scripts={
        "prompt rewriter": {"args": [False]}, "prompt suffix": {"args": [True]}})
    assert info["all_prompts"] == ["a red circle, highly detailed"]      # its setting's default


def test_selectable_script_run_returns_processed(easel):
    _, _, client = easel
    body, info = _generate(client, seed=11, steps=1, script_name="Seed Copies", script_args=[2])
    assert len(body["images"]) == 2 and info["all_seeds"] == [11, 12]
    assert "Copies: 2" in info["infotexts"][0]


@pytest.mark.parametrize("fields, named", [
    ({"script_name": "no such script"}, "no such script"),
    ({"alwayson_scripts": {"ControlNet": {"args": []}}}, "ControlNet"),
    ({"alwayson_scripts": {"Seed Copies": {"args": []}}}, "Seed Copies"),          # selectable, not always-on
    ({"script_name": "seed copies", "script_args": [1, 2, 3]}, "takes 1 argument"),
    ({"alwayson_scripts": {"prompt rewriter": [True]}}, "prompt rewriter"),
])
def test_unknown_scripts_and_bad_args_are_422_naming_them(easel, fields, named):
    _, _, client = easel
    response = client.post("/sdapi/v1/txt2img", json=small(**fields))
    assert response.status_code == 422
    assert named in response.json()["detail"]


def test_image_saved_callbacks_and_denoiser_callbacks(easel):
    _, _, client = easel
    saver = _module("tab-and-saver", "saver")
    saver.denoiser_steps.clear()
    saver.denoised_steps.clear()
    _, info = _generate(client, seed=21, steps=2, save_images=True)
    assert len(saver.saved) == 1 and saver.before_saved == saver.saved
    saved = Path(saver.saved[0])
    assert saved.is_file()
    with Image.open(saved) as image:
        assert image.info["parameters"].endswith(", Saver: yes")     # edited by on_before_image_saved
    assert [s for s, _ in saver.denoiser_steps] == [0, 1] and saver.denoised_steps == [0, 1]


def test_broken_extension_is_reported_and_skipped(easel):
    from modules.ui import scripts_ui

    _, _, client = easel
    _generate(client, seed=31, steps=1, save_images=True)               # generation goes on
    failures = {e.what: e for e in _errors_of("broken")}
    for what in ("import of scripts/a_import_error.py", "Bad UI.ui()", "Bad Process.process()",
                 "Bad Process.postprocess_image()", "ui_settings callback", "ui_tabs callback",
                 "image_saved callback", "app_started callback"):
        assert what in failures, f"{what} not reported; got {sorted(failures)}"
    assert "broken on purpose at import" in failures["import of scripts/a_import_error.py"].traceback
    assert "Traceback" in failures["Bad Process.process()"].traceback
    notice = scripts_ui.notice_html()
    assert "broken" in notice and "broken on purpose in process()" in notice


# ---- the page -------------------------------------------------------------------

def _page_config(client) -> dict:
    response = client.get("/config")
    assert response.status_code == 200, response.text[:300]
    return response.json()


def test_page_has_script_dropdown_sections_tab_settings_and_assets(easel):
    _, _, client = easel
    config = _page_config(client)
    props = [c.get("props", {}) for c in config["components"]]
    by_elem = {p.get("elem_id"): p for p in props if p.get("elem_id")}
    dropdown = by_elem["script_list"]
    choices = [c[0] for c in dropdown["choices"]]
    assert choices[0] == "None" and "Seed Copies" in choices          # always-on scripts are not in it
    assert "Prompt Rewriter" not in choices and "X/Y/Z plot" in choices
    assert by_elem["txt2img_prompt_rewriter_accordion"]["label"] == "Prompt Rewriter"
    assert by_elem["txt2img_prompt_rewriter_extra"]["label"] == "Extra words"
    assert by_elem["tab_saver_tab"]["label"] == "Saver Tab"
    assert by_elem["saver_hello"]["value"] == "Hello from the saver tab"
    assert by_elem["setting_rewriter_tag"]["label"] == "Tag written to the infotext"
    assert "promptRewriterLoaded" in config["head"] and "onUiLoaded" in config["head"]
    assert ".prompt-rewriter-marker" in config["css"]


# ---- switches (these rebuild the app: keep them last) ------------------------------

@pytest.mark.parametrize("flag", ["--disable-all-extensions", "--disable-extra-extensions"])
def test_disable_flags_load_no_extra_extension(tmp_path, easel, flag):
    shutil.copytree(FIXTURES, tmp_path / "data" / "extensions")
    _, shared, client = _start(tmp_path, ["--nowebui", flag], load=False)
    try:
        assert client.get("/sdapi/v1/scripts").json() == BUILTIN_SCRIPT_LISTING   # built-ins stay
        assert not any(e["enabled"] for e in client.get("/sdapi/v1/extensions").json())
        assert not (tmp_path / "data" / "extensions" / "prompt-rewriter" / "install-count.txt").exists()
    finally:
        client.close()
        shared.queue.shutdown()


# ---- the page in Chromium (the real app.py in a subprocess) ----------------------------

def test_page_in_chromium_runs_extension_ui_js_css_and_hooks(tmp_path):
    from tests.browser_helpers import CHROMIUM, AppProcess, chromium_page, set_slider, wait_for_model_ready, \
        watch_generation
    from tests.factories import make_tiny_checkpoint

    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    make_tiny_checkpoint(tmp_path / "ckpt", "sd1")
    shutil.copytree(FIXTURES, tmp_path / "data" / "extensions")
    server = AppProcess(tmp_path / "ckpt", tmp_path / "data", ("--rewriter-suffix-file", "sketch.txt"))
    try:
        server.wait_until_serving()
        log = server.log_tail(20000)
        assert "Extensions loaded (4):" in log and "prompt-rewriter:" in log       # load time per extension
        assert "prompt-rewriter install ran (1)" in log                            # install.py output shown
        assert "broken on purpose at import" in log                                # traceback in the log
        with chromium_page() as page:
            page.goto(server.url)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
            wait_for_model_ready(page)
            assert "broken" in page.locator("#extension_errors").inner_text()       # page notice
            assert page.evaluate("() => window.promptRewriterLoaded") is True       # javascript/*.js ran
            page.get_by_role("tab", name="Saver Tab").click()
            assert "Hello from the saver tab" in page.locator("#saver_hello").inner_text()
            page.get_by_role("tab", name="txt2img").click()
            page.locator("#txt2img_prompt_rewriter_accordion").get_by_text("Prompt Rewriter").first.click()
            page.wait_for_selector(".prompt-rewriter-marker")
            outline = page.evaluate("() => getComputedStyle(document.querySelector("
                                    "'.prompt-rewriter-marker')).outlineColor")
            assert outline == "rgb(1, 2, 3)"                                        # style.css applied
            page.locator("#txt2img_prompt_rewriter_extra textarea").fill("bold")
            page.locator("#txt2img_prompt textarea").fill("a red circle")
            for slider, value in (("txt2img_steps", 2), ("txt2img_width", 64), ("txt2img_height", 64)):
                set_slider(page, slider, value)
            page.locator("#txt2img_generate").click()
            _, final = watch_generation(page)
            assert "\na red circle, as pencil sketch, bold\n" in final["info"], final["info"]
            assert "Rewriter: rw1" in final["info"]
            assert "Bad Process.process() failed" in final["info"]                   # reported, generation went on
    finally:
        server.stop()

"""The `webuiapi` client from PyPI, unchanged, against a real Easel server (uvicorn on a free port).

Extras (extra_single_image / extra_batch_images) are exercised with this
client in tests/test_extras.py, img2img and inpainting in
tests/test_api_webuiapi_img2img.py.
"""
from __future__ import annotations

import threading
import time

import pytest

webuiapi = pytest.importorskip("webuiapi", reason="pip install -r requirements-test.txt")

from tests.factories import BUILTIN_SCRIPT_LISTING  # noqa: E402
from tests.test_api_support import Server, start_easel, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    easel = start_easel(tmp_path_factory.mktemp("easel-webuiapi"), ["--nowebui", "--api-auth", "user:pw"], checkpoints=2)
    server = Server(easel.app)
    yield easel, server
    server.close()
    easel.close()


@pytest.fixture(scope="module")
def api(served):
    _, server = served
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2, username="user", password="pw")


def test_wrong_password_is_refused(served):
    _, server = served
    bad = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, username="user", password="nope")
    assert bad.session.get(f"{bad.baseurl}/options").status_code == 401   # get_options() does not check status
    assert "samples_format" not in bad.get_options()


def test_txt2img_and_png_info(api):
    result = api.txt2img(prompt="a red circle", seed=42, width=64, height=64, cfg_scale=7)
    assert result.image.size == (64, 64)
    assert result.info["all_seeds"] == [42] and result.info["task_id"].startswith("task(")
    info = api.png_info(result.image)
    assert "Seed: 42" in info.info
    again = api.txt2img(prompt="a red circle", seed=42, width=64, height=64, cfg_scale=7)
    assert again.image.tobytes() == result.image.tobytes()


def test_lists_and_options(api):
    assert {"Euler", "Euler a"} <= set(api.util_get_sampler_names())
    assert "karras" in api.util_get_scheduler_names()
    assert len(api.util_get_model_names()) == 2
    options = api.get_options()
    assert options["samples_format"] == "png"
    api.set_options({"samples_format": "jpg"})
    assert api.get_options()["samples_format"] == "jpg"
    api.set_options({"samples_format": "png"})
    assert api.get_scripts() == BUILTIN_SCRIPT_LISTING
    assert api.get_cmd_flags()["api_auth"] == "user:***"


def test_switch_checkpoint(api, served):
    easel, _ = served
    names = api.util_get_model_names()
    for name in reversed(names):
        api.util_set_model(name)
        assert api.util_get_current_model() == easel.shared.models.current_title()
        assert easel.shared.models.current.checkpoint.name.split(".")[0] == name.split(".")[0]


def test_progress_polled_from_another_thread_and_interrupt(api, served):
    easel, _ = served
    seen, results = [], []
    worker = threading.Thread(target=lambda: results.append(
        api.txt2img(prompt="long", seed=1, width=64, height=64, steps=150)))
    worker.start()
    job = wait_until(lambda: easel.shared.queue.current if easel.shared.queue.current and
                     easel.shared.queue.current.label == "txt2img" else None, timeout=120, what="txt2img running")

    def poll():
        while not job.finished:
            seen.append(api.get_progress())
            if seen[-1]["state"]["sampling_step"] >= 2:
                api.interrupt()
                return
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    poller.join(300)
    worker.join(300)
    assert any(0 < p["progress"] < 1 and p["state"]["sampling_steps"] == 150 for p in seen)
    assert job.status == "interrupted" and results[0].images == []
    api.util_wait_for_ready(check_interval=0.1)

"""The A1111 API in-process (FastAPI TestClient on 127.0.0.1) on a tiny model: shapes, validation, queue."""
from __future__ import annotations

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests.factories import BUILTIN_SCRIPT_LISTING
from tests.test_api_support import blocker, decode_png, small, start_easel, wait_until


@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    root = tmp_path_factory.mktemp("easel-api")
    (root / "data").mkdir()
    (root / "data" / "styles.csv").write_text('name,prompt,negative_prompt\n"Cinematic","film still, {prompt}","cartoon"\n')
    instance = start_easel(root, ["--nowebui"], checkpoints=2)
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def client(easel):
    return easel.client


@pytest.fixture(scope="module")
def generated(client):
    """One small generation shared by the shape tests."""
    response = client.post("/sdapi/v1/txt2img", json=small(seed=1234, force_task_id="task(shapes)"))
    assert response.status_code == 200, response.text
    return response.json()


def test_txt2img_response_has_a1111_shape(generated):
    assert set(generated) == {"images", "parameters", "info"}
    assert len(generated["images"]) == 1
    assert not generated["images"][0].startswith("data:")          # raw base64, as A1111
    image = decode_png(generated["images"][0])
    assert image.size == (64, 64)
    info = json.loads(generated["info"])
    assert info["task_id"] == "task(shapes)"
    assert info["all_seeds"] == [1234] and info["seed"] == 1234
    assert info["sampler_name"] == "Euler" and info["steps"] == 2
    assert "Seed: 1234" in info["infotexts"][0]
    assert image.info["parameters"] == info["infotexts"][0]          # infotext inside the PNG
    assert generated["parameters"]["prompt"] == "a red circle"


def test_png_info_reads_back_generated_image_raw_and_data_uri(client, generated):
    raw = generated["images"][0]
    for value in (raw, "data:image/png;base64," + raw):
        body = client.post("/sdapi/v1/png-info", json={"image": value}).json()
        assert "Seed: 1234" in body["info"]
        assert body["parameters"]["Seed"] == "1234" and body["parameters"]["Steps"] == "2"


def test_sampler_index_is_alias_of_sampler_name(client):
    body = client.post("/sdapi/v1/txt2img", json={**small(seed=5, steps=1), "sampler_name": None,
                                                  "sampler_index": "DPM++ 2M"}).json()
    assert json.loads(body["info"])["sampler_name"] == "DPM++ 2M"


def test_override_settings_apply_to_one_job_and_are_restored(client):
    before = client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"]
    body = client.post("/sdapi/v1/txt2img", json=small(seed=9, steps=1, override_settings={"CLIP_stop_at_last_layers": 2})).json()
    assert "Clip skip: 2" in json.loads(body["info"])["infotexts"][0]
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == before


@pytest.mark.parametrize("fields, named", [
    ({"steps": 0}, "steps"), ({"steps": 151}, "steps"), ({"steps": "many"}, "steps"),
    ({"width": 65}, "width"), ({"height": 8192}, "height"), ({"cfg_scale": 1000}, "cfg_scale"),
    ({"batch_size": 0}, "batch_size"), ({"n_iter": 0}, "n_iter"),
    ({"sampler_name": "Eulr"}, "sampler_name"), ({"scheduler": "sometimes"}, "scheduler"),
    ({"denoising_strength": 1.5}, "denoising_strength"),
    ({"alwayson_scripts": {"ControlNet": {"args": []}}}, "ControlNet"),
    ({"script_name": "no such script"}, "no such script"),
    ({"override_settings": {"no_such_setting": 1}}, "no_such_setting"),
    ({"override_settings": {"sd_model_checkpoint": "missing.safetensors"}}, "missing.safetensors"),
])
def test_bad_fields_are_422_naming_the_field(client, fields, named):
    response = client.post("/sdapi/v1/txt2img", json=small(**fields))
    assert response.status_code == 422
    assert named in response.text
    if "sampler" in named:
        assert "Euler a" in response.text                 # the allowed values are listed


@pytest.mark.parametrize("image, message", [
    ("not base64 !!!", "not valid base64"),
    (base64.b64encode(b"just some text").decode(), "not to an image"),
    ("https://example.com/cat.png", "URLs are not fetched"),
])
def test_png_info_bad_images_are_422_naming_the_field(client, image, message):
    response = client.post("/sdapi/v1/png-info", json={"image": image})
    assert response.status_code == 422 and message in response.text and "image" in response.text


def test_png_info_refuses_oversized_image(client):
    buffer = io.BytesIO()
    Image.new("1", (4200, 4200)).save(buffer, format="PNG")      # small file, 17.6 M pixels
    response = client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert response.status_code == 422 and "4200x4200" in response.text
    assert client.get("/sdapi/v1/options").status_code == 200      # still serving


def test_lists_have_a1111_shapes(client, easel):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"Euler a", "Euler", "DPM++ 2M"} <= {s["name"] for s in samplers}
    assert {"automatic", "karras"} <= {s["name"] for s in client.get("/sdapi/v1/schedulers").json()}
    models = client.get("/sdapi/v1/sd-models").json()
    assert sorted(m["model_name"] for m in models) == sorted(p.stem for p in easel.checkpoints)
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert client.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "Cinematic", "prompt": "film still, {prompt}", "negative_prompt": "cartoon"}]
    assert client.get("/sdapi/v1/scripts").json() == BUILTIN_SCRIPT_LISTING
    assert client.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    for empty in ("extensions", "loras", "sd-vae"):
        assert client.get(f"/sdapi/v1/{empty}").json() == []
    assert [u["name"] for u in client.get("/sdapi/v1/upscalers").json()] == ["None", "Lanczos", "Nearest"]
    assert client.get("/sdapi/v1/latent-upscale-modes").json()[0] == {"name": "Latent"}
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["used"] > 0
    assert "error" in memory["cuda"] or "system" in memory["cuda"]
    assert client.get("/sdapi/v1/cmd-flags").json()["nowebui"] is True
    assert "/sdapi/v1/txt2img" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_options_set_validates_and_persists(client, easel):
    assert client.post("/sdapi/v1/options", json={"no_such_setting": 1}).status_code == 422
    bad = client.post("/sdapi/v1/options", json={"samples_format": 5})
    assert bad.status_code == 422 and "samples_format" in bad.text
    assert client.post("/sdapi/v1/options", json={"samples_format": "jpg"}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["samples_format"] == "jpg"
    assert json.loads((easel.root / "data" / "config.json").read_text())["samples_format"] == "jpg"
    client.post("/sdapi/v1/options", json={"samples_format": "png"})


def test_options_change_waits_for_the_running_job(client, easel):
    job, release = blocker(easel.shared)
    done = []
    thread = threading.Thread(target=lambda: done.append(
        client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code))
    thread.start()
    wait_until(lambda: easel.shared.queue.queued(), what="options job queued")
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1   # not applied mid-job
    release()
    thread.join(60)
    assert done == [200] and job.status == "done"
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})


def test_switch_checkpoint_through_options_and_override(client, easel):
    first, second = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": second}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == easel.shared.models.current_title()
    assert easel.shared.models.current.checkpoint.title.split(" [")[0] == second.split(" [")[0]
    body = client.post("/sdapi/v1/txt2img", json=small(seed=3, steps=1, override_settings={"sd_model_checkpoint": first})).json()
    assert json.loads(body["info"])["sd_model_name"] == first.split(".")[0]
    assert easel.shared.models.current.checkpoint.title.split(" [")[0] == second.split(" [")[0]   # restored
    assert client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert easel.shared.models.current is None
    assert client.post("/sdapi/v1/reload-checkpoint").status_code == 200
    assert easel.shared.models.current.checkpoint.title.split(" [")[0] == second.split(" [")[0]
    client.post("/sdapi/v1/options", json={"sd_model_checkpoint": first})


def test_progress_by_id_reports_queued_running_done(client, easel):
    job, release = blocker(easel.shared)
    results = []
    thread = threading.Thread(target=lambda: results.append(
        client.post("/sdapi/v1/txt2img", json=small(seed=11, steps=1, force_task_id="task(watch)"))))
    thread.start()
    wait_until(lambda: easel.shared.queue.get("task(watch)"), what="job queued")
    queued = client.get("/sdapi/v1/progress", params={"id_task": "task(watch)"}).json()
    assert queued["status"] == "queued" and queued["queued"] and queued["queue_position"] == 1
    running = client.get("/sdapi/v1/progress").json()
    assert running["current_task"] == job.id and running["status"] == "running"
    release()
    thread.join(300)
    done = client.get("/sdapi/v1/progress", params={"id_task": "task(watch)"}).json()
    assert done["status"] == "done" and done["progress"] == 1.0 and done["completed"]
    assert json.loads(results[0].json()["info"])["task_id"] == "task(watch)"
    assert client.get("/sdapi/v1/progress", params={"id_task": "task(nope)"}).status_code == 404


def test_easel_queue_lists_and_cancels(client, easel):
    job, release = blocker(easel.shared)
    responses = {}

    def fire(task_id):
        responses[task_id] = client.post("/sdapi/v1/txt2img", json=small(seed=1, steps=1, force_task_id=task_id))

    threads = []
    for task_id in ("task(q1)", "task(q2)"):
        threads.append(threading.Thread(target=fire, args=(task_id,)))
        threads[-1].start()
        wait_until(lambda: easel.shared.queue.get(task_id), what=f"{task_id} queued")
    listing = client.get("/easel/v1/queue").json()["jobs"]
    assert [(j["id"], j["position"], j["status"]) for j in listing] == [
        (job.id, 0, "running"), ("task(q1)", 1, "queued"), ("task(q2)", 2, "queued")]
    assert client.delete(f"/easel/v1/queue/{job.id}").status_code == 409           # running
    assert client.delete("/easel/v1/queue/task(unknown)").status_code == 404
    assert client.post("/easel/v1/queue/task(q1)/cancel").status_code == 200
    assert [j["id"] for j in client.get("/easel/v1/queue").json()["jobs"]] == [job.id, "task(q2)"]
    release()
    for thread in threads:
        thread.join(300)
    assert responses["task(q1)"].status_code == 409 and "cancelled" in responses["task(q1)"].text
    assert responses["task(q2)"].status_code == 200
    assert client.delete("/easel/v1/queue/task(q2)").status_code == 409            # already ended


def test_twenty_concurrent_requests_fifo_and_no_crossed_outputs(client, easel):
    job, release = blocker(easel.shared)
    seeds = list(range(500, 520))
    with ThreadPoolExecutor(len(seeds)) as pool:
        futures = {seed: pool.submit(client.post, "/sdapi/v1/txt2img",
                                     json=small(seed=seed, steps=1, force_task_id=f"task(load-{seed})"))
                   for seed in seeds}
        wait_until(lambda: len(easel.shared.queue.queued()) == len(seeds), what="20 jobs queued")
        queue_order = [j.id for j in easel.shared.queue.queued()]
        release()
        responses = {seed: f.result(timeout=900) for seed, f in futures.items()}
    assert all(r.status_code == 200 for r in responses.values())
    jobs = [easel.shared.queue.get(task_id) for task_id in queue_order]
    started = [j.progress.started_at for j in jobs]
    assert started == sorted(started)                                   # ran in the order they were queued
    for seed, response in responses.items():
        info = json.loads(response.json()["info"])
        assert info["seed"] == seed and info["task_id"] == f"task(load-{seed})"
    for seed in seeds:                                                   # each equals its seed generated alone
        alone = client.post("/sdapi/v1/txt2img", json=small(seed=seed, steps=1)).json()
        assert decode_png(alone["images"][0]).tobytes() == decode_png(responses[seed].json()["images"][0]).tobytes(), seed


def test_interrupt_stops_only_the_running_job(client, easel):
    job, release = blocker(easel.shared)
    results = {}

    def fire(name, **fields):
        results[name] = client.post("/sdapi/v1/txt2img", json=small(force_task_id=f"task({name})", **fields))

    threads = [threading.Thread(target=fire, args=("long",), kwargs={"seed": 1, "steps": 150}),
               threading.Thread(target=fire, args=("after",), kwargs={"seed": 2, "steps": 1})]
    threads[0].start()
    wait_until(lambda: easel.shared.queue.get("task(long)"), what="long job queued")
    threads[1].start()
    wait_until(lambda: easel.shared.queue.get("task(after)"), what="second job queued")
    release()
    long_job = easel.shared.queue.get("task(long)")
    wait_until(lambda: long_job.progress.sampling_step >= 1, timeout=300, what="long job sampling")
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    for thread in threads:
        thread.join(600)
    assert long_job.status == "interrupted" and results["long"].json()["images"] == []
    assert easel.shared.queue.get("task(after)").status == "done"
    assert len(results["after"].json()["images"]) == 1

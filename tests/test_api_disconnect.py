"""A client that hangs up withdraws its job: queued -> removed, running -> interrupted; others go on.

A real uvicorn server (disconnects do not exist in the TestClient), clients
on raw sockets or httpx with a timeout that gives up, the way a script that
is killed or a browser tab that is closed behaves.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

from tests.test_api_support import SIZE, Server, blocker, decode_png, small, start_easel, wait_until


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    easel = start_easel(tmp_path_factory.mktemp("easel-disconnect"), ["--nowebui"], checkpoints=1)
    server = Server(easel.app)
    yield easel, server
    server.close()
    easel.close()


def post_and_hang_up_later(port: int, path: str, body: dict) -> socket.socket:
    """Send a complete POST on a raw socket and return it unread; closing it is the disconnect."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def queue_ids(server) -> list[str]:
    return [job["id"] for job in httpx.get(f"{server.url}/easel/v1/queue").json()["jobs"]]


def background_post(url: str, body: dict, results: dict, key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.__setitem__(key, httpx.post(url, json=body, timeout=600)))
    thread.start()
    return thread


def test_queued_job_leaves_the_queue_when_its_client_hangs_up(served):
    easel, server = served
    running, release = blocker(easel.shared)
    results = {}
    try:
        gone = post_and_hang_up_later(server.port, "/sdapi/v1/txt2img", small(seed=1, force_task_id="task(gone-q)"))
        wait_until(lambda: easel.shared.queue.get("task(gone-q)"), what="first job queued")
        stays = background_post(f"{server.url}/sdapi/v1/txt2img", small(seed=2, force_task_id="task(stays-q)"),
                                results, "stays")
        wait_until(lambda: easel.shared.queue.get("task(stays-q)"), what="second job queued")
        assert queue_ids(server) == [running.id, "task(gone-q)", "task(stays-q)"]

        gone.close()
        wait_until(lambda: "task(gone-q)" not in queue_ids(server), timeout=10, what="queued job withdrawn")
        assert queue_ids(server) == [running.id, "task(stays-q)"]
        assert easel.shared.queue.get("task(gone-q)").status == "cancelled"
        assert running.status == "running"                                        # the running job is not touched
    finally:
        release()
    stays.join(300)
    assert results["stays"].status_code == 200 and len(results["stays"].json()["images"]) == 1
    assert running.status == "done"


def test_running_job_stops_when_its_client_hangs_up_and_the_next_one_runs(served):
    easel, server = served
    running, release = blocker(easel.shared)
    results = {}
    try:
        gone = post_and_hang_up_later(server.port, "/sdapi/v1/txt2img",
                                      small(seed=3, steps=150, width=128, height=128, force_task_id="task(gone-r)"))
        wait_until(lambda: easel.shared.queue.get("task(gone-r)"), what="long job queued")
        stays = background_post(f"{server.url}/sdapi/v1/txt2img", small(seed=4, force_task_id="task(stays-r)"),
                                results, "stays")
        wait_until(lambda: easel.shared.queue.get("task(stays-r)"), what="second job queued")
    finally:
        release()
    long_job = easel.shared.queue.get("task(gone-r)")
    wait_until(lambda: long_job.progress.sampling_step >= 2, timeout=300, what="long job sampling")
    hung_up_at = time.monotonic()
    gone.close()
    # two delays: the server noticing the hang-up (its poll, ~0.1 s), then the sampler stopping at its next step
    wait_until(lambda: long_job.progress.interrupted or long_job.finished, timeout=30, what="hang-up noticed")
    noticed_after, step_when_told = time.monotonic() - hung_up_at, long_job.progress.sampling_step
    finished = long_job.wait(300)
    stays.join(300)
    assert finished and long_job.status == "interrupted"
    assert long_job.progress.sampling_step <= step_when_told + 1 < 150           # stopped within a step
    assert noticed_after < 10
    assert results["stays"].status_code == 200
    image = decode_png(results["stays"].json()["images"][0])
    assert image.size == (SIZE, SIZE) and json.loads(results["stays"].json()["info"])["seed"] == 4
    assert easel.shared.queue.get("task(stays-r)").status == "done"
    print(f"hang-up noticed after {noticed_after:.2f} s at step {step_when_told}; "
          f"stopped at step {long_job.progress.sampling_step}")


def test_img2img_client_that_times_out_withdraws_its_job(served):
    """httpx giving up after its read timeout closes the connection, like any client with a deadline."""
    easel, server = served
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (200, 30, 30)).save(buffer, "PNG")
    body = small(seed=5, init_images=[base64.b64encode(buffer.getvalue()).decode()], denoising_strength=0.5,
                 force_task_id="task(gone-i)")
    running, release = blocker(easel.shared)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/sdapi/v1/img2img", json=body, timeout=httpx.Timeout(10, read=2.0))
        # under load the client may give up before the job is even queued; then it is withdrawn at once
        wait_until(lambda: getattr(easel.shared.queue.get("task(gone-i)"), "status", None) == "cancelled",
                   timeout=30, what="timed-out img2img job withdrawn")
        assert queue_ids(server) == [running.id]
    finally:
        release()
    assert running.wait(30) and running.status == "done"


def test_a_client_that_stays_gets_its_images(served):
    """The disconnect check must not end requests whose clients are still waiting (a slow job, 3 s+)."""
    easel, server = served
    running, release = blocker(easel.shared)
    results = {}
    thread = background_post(f"{server.url}/sdapi/v1/txt2img", small(seed=6, force_task_id="task(patient)"),
                             results, "patient")
    wait_until(lambda: easel.shared.queue.get("task(patient)"), what="job queued")
    time.sleep(3)                                      # many disconnect checks while it waits in the queue
    assert easel.shared.queue.get("task(patient)").status == "queued"
    release()
    thread.join(300)
    assert results["patient"].status_code == 200 and len(results["patient"].json()["images"]) == 1


def test_other_requests_are_answered_while_a_generation_request_is_checked(served, monkeypatch):
    """The first check imports torch and can wait seconds for the model loader; it must not
    hold the event loop, or the page's progress polls would stall behind it."""
    from modules.api import routes

    easel, server = served
    checking, polled = threading.Event(), threading.Event()
    real_check = routes.check_txt2img

    def slow_check(req):
        checking.set()
        polled.wait(30)
        return real_check(req)

    monkeypatch.setattr(routes, "check_txt2img", slow_check)
    results = {}
    post = background_post(f"{server.url}/sdapi/v1/txt2img", small(seed=3), results, "image")
    try:
        assert checking.wait(30), "the request never reached its check"
        progress = httpx.get(f"{server.url}/sdapi/v1/progress", timeout=10)   # times out if the loop is held
    finally:
        polled.set()
        post.join(120)
    assert progress.status_code == 200
    assert results["image"].status_code == 200 and results["image"].json()["images"]

"""Helpers for the API tests (no tests here): build Easel's app on tiny models, in-process or served.

    easel = start_easel(tmp, ["--nowebui"])          # app + shared, model loaded, TestClient on 127.0.0.1
    easel.client.post("/sdapi/v1/txt2img", json=small(seed=1))
    server = serve(easel.app)                          # real uvicorn on a free port (for webuiapi)
    easel.close()

The app is built the way app.py builds it: `cmd_args.parse_args([...])` then
`app.create_app(cmd_opts)`, with --data-dir and --ckpt-dir in a temporary
folder. models/Stable-diffusion/easel-demo.safetensors is used when it exists
(the issue asks for the demo model), else a tiny random SD1 checkpoint.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tests.browser_helpers import free_port  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "models" / "Stable-diffusion" / "easel-demo.safetensors"
SIZE = 64
LOAD_TIMEOUT = 600
LOOPBACK = "http://127.0.0.1"


def small(**fields) -> dict:
    """A cheap txt2img request: 64x64, 2 steps, Euler (deterministic), nothing saved."""
    return {"prompt": "a red circle", "negative_prompt": "", "steps": 2, "width": SIZE, "height": SIZE,
            "sampler_name": "Euler", "cfg_scale": 7.0, **fields}


def make_checkpoints(folder: Path, count: int = 1) -> list[Path]:
    """`count` checkpoints in `folder`: the demo model when present (first), then tiny SD1 ones."""
    from tests.factories import make_tiny_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    if DEMO_MODEL.exists():
        target = folder / DEMO_MODEL.name
        if not target.exists():
            os.symlink(DEMO_MODEL, target)
        paths.append(target)
    for n in range(count - len(paths)):
        paths.append(make_tiny_checkpoint(folder, "sd1", seed=n, name=f"tiny-{n}"))
    return paths


@dataclass
class Easel:
    app: object
    shared: object
    client: object
    cmd_opts: object
    root: Path
    checkpoints: list

    def close(self) -> None:
        self.client.close()
        self.shared.queue.shutdown()


def start_easel(root: Path, flags: list[str], checkpoints: int = 1, load: bool = True) -> Easel:
    import app as easel_app
    from fastapi.testclient import TestClient

    from modules import cmd_args

    root = Path(root)
    paths = make_checkpoints(root / "ckpt", checkpoints)
    cmd_opts = cmd_args.parse_args([*flags, "--data-dir", str(root / "data"), "--ckpt-dir", str(root / "ckpt"),
                                    "--ckpt", str(paths[0])], environ={})
    app, shared = easel_app.create_app(cmd_opts)
    if load:
        job = shared.models.request_load(str(paths[0].name))
        assert job.wait(LOAD_TIMEOUT) and job.status == "done", f"model load: {job.status} {job.error}"
    client = TestClient(app, base_url=LOOPBACK)
    return Easel(app, shared, client, cmd_opts, root, paths)


def decode_png(b64: str):
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    image.load()
    return image


class Server:
    """uvicorn serving `app` on 127.0.0.1:port in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def wait_until(predicate, timeout: float = 120, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def blocker(shared):
    """Put a job on the queue that holds the worker until released: (job, release())."""
    gate = threading.Event()
    job = shared.queue.submit(lambda job: gate.wait(300), label="test blocker")
    wait_until(lambda: job.status == "running", what="blocker to start")
    return job, gate.set


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

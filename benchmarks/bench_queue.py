"""Throughput of the API queue and its overhead per job, against calling process_images directly.

    venv/bin/python -m benchmarks.bench_queue [--jobs 20] [--steps 4] [--size 64]

Same model, same requests, same process: (1) process_images in a loop on
this thread, (2) the same jobs one after another through POST
/sdapi/v1/txt2img (TestClient: validation, queue, worker thread, PNG+base64
encoding, JSON), (3) all jobs fired at once from as many threads. Uses
models/Stable-diffusion/easel-demo.safetensors when present, else a tiny
random SD1 checkpoint (then the absolute numbers say little about real
models; the overhead per job is what this measures).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from benchmarks.timing import print_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from modules import processing
    from tests.test_api_support import start_easel

    with tempfile.TemporaryDirectory() as tmp:
        easel = start_easel(Path(tmp), ["--nowebui"])
        model = easel.shared.models.current
        request = {"prompt": "a red circle", "steps": args.steps, "width": args.size, "height": args.size,
                   "sampler_name": "Euler", "cfg_scale": 7.0}

        def direct(seed):
            p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, seed=seed, do_not_save_samples=True,
                                                            **request)
            processing.process_images(p)

        def via_api(seed):
            response = easel.client.post("/sdapi/v1/txt2img", json={**request, "seed": seed})
            assert response.status_code == 200, response.text

        direct(0)
        via_api(0)                                   # warm both paths
        seeds = list(range(1, args.jobs + 1))
        rows = []
        timings = {}
        for name, run in (("process_images, sequential", lambda: [direct(s) for s in seeds]),
                          ("API txt2img, sequential", lambda: [via_api(s) for s in seeds]),
                          (f"API txt2img, {args.jobs} concurrent", lambda: _concurrent(via_api, seeds))):
            started = time.perf_counter()
            run()
            timings[name] = elapsed = time.perf_counter() - started
            rows.append([name, f"{elapsed:.2f}", f"{elapsed / args.jobs * 1000:.0f}", f"{args.jobs / elapsed * 60:.0f}"])
        easel.close()

    base = timings["process_images, sequential"]
    for row, elapsed in zip(rows, timings.values()):
        row.append(f"{(elapsed - base) / args.jobs * 1000:+.1f}")
    model_name = model.checkpoint.name
    print_table(f"Queue throughput: {args.jobs} jobs, {args.size}x{args.size}, {args.steps} steps, Euler, "
                f"model {model_name}, torch threads {args.threads}",
                ["path", "total s", "ms/job", "images/min", "overhead ms/job vs direct"], rows)


def _concurrent(fn, seeds):
    with ThreadPoolExecutor(len(seeds)) as pool:
        list(pool.map(fn, seeds))


if __name__ == "__main__":
    main()

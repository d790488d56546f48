"""Easel's own queue endpoints under /easel/v1: list jobs, cancel a queued one.

A1111 has no queue API (its requests simply block); these let a client see
where its job stands and withdraw it before it starts.
"""
from __future__ import annotations

from fastapi import APIRouter, HTTPException

from modules import shared


def job_summary(job, position: int) -> dict:
    state = job.progress
    return {"id": job.id, "label": job.label, "status": job.status, "position": position,
            "submitted_at": job.submitted_at, "progress": 1.0 if job.finished else state.fraction(),
            "sampling_step": state.sampling_step, "sampling_steps": state.sampling_steps}


def create_router() -> APIRouter:
    router = APIRouter(prefix="/easel/v1", tags=["easel queue"])

    @router.get("/queue")
    def list_queue():
        """The running job (position 0) and the queued ones in the order they will run (1, 2, ...)."""
        jobs = []
        running = shared.queue.current
        if running is not None and not running.finished:
            jobs.append(job_summary(running, 0))
        jobs += [job_summary(job, n) for n, job in enumerate(shared.queue.queued(), start=1)]
        return {"jobs": jobs}

    def cancel(job_id: str):
        job = shared.queue.get(job_id)
        if job is None:
            raise HTTPException(404, detail=f"no job with id {job_id!r}")
        if job.status == "queued" and shared.queue.cancel(job_id):
            return {"id": job_id, "status": "cancelled"}
        if job.status == "running":
            raise HTTPException(409, detail=f"job {job_id!r} is running; stop it with POST /sdapi/v1/interrupt")
        raise HTTPException(409, detail=f"job {job_id!r} has already ended ({job.status})")

    router.add_api_route("/queue/{job_id}", cancel, methods=["DELETE"], summary="Cancel a queued job")
    router.add_api_route("/queue/{job_id}/cancel", cancel, methods=["POST"], summary="Cancel a queued job")
    return router

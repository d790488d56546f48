"""The /sdapi/v1 routes that act: txt2img, png-info, progress, interrupt/skip, options, checkpoints.

Handlers only check requests, submit jobs and read state; the worker thread
owns the model. Everything that touches the model or the settings the model
reads (generation, option changes, loading and unloading) is a job on the one
FIFO queue, so it happens between jobs, never in the middle of one. Handlers
that wait for a job are async and poll it, so a hundred waiting requests do
not use up the thread pool that /progress is answered from.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from modules import shared
from modules.api import image_input, listings, queue_routes
from modules.api.schemas import Img2ImgRequest, PngInfoRequest, Txt2ImgRequest

log = logging.getLogger(__name__)

# Request fields that do not go as they are to the Processing field of the same name: derived from other
# fields (sampler_index, save_images), decoded or resolved first (images, script args), or with a rule below.
SET_BY_HAND = frozenset({"sampler_name", "denoising_strength", "do_not_save_samples", "do_not_save_grid",
                         "init_images", "mask", "latent_mask", "mask_blur", "script_args"})
POLL_SECONDS = 0.02
DISCONNECT_POLL_SECONDS = 0.1      # how often a waiting generation request checks its client


async def wait_for(job, request: Request | None = None) -> bool:
    """Wait for a job without holding a thread; False when the client hung up first.

    With `request`, a client that closes its connection withdraws its job: a
    queued one leaves the queue, a running one is interrupted at its next step
    (nobody is left to receive the images). Other jobs are not touched.
    """
    next_check = 0.0
    loop = asyncio.get_running_loop()
    while not job.finished:
        if request is not None and loop.time() >= next_check:
            next_check = loop.time() + DISCONNECT_POLL_SECONDS
            if await request.is_disconnected():
                withdraw(job)
                return False
        await asyncio.sleep(POLL_SECONDS)
    return True


def withdraw(job) -> None:
    """Cancel `job` if it is still queued, else interrupt it if it is running."""
    if shared.queue.cancel(job.id):
        log.info("client disconnected: removed queued job %s", job.id)
    elif not job.finished:
        shared.queue.interrupt(job.id)
        log.info("client disconnected: interrupted running job %s", job.id)


def raise_for_job(job) -> None:
    """Turn a job that did not produce a result into the HTTP error a client can act on."""
    if job.status == "cancelled":
        raise HTTPException(409, detail=f"job {job.id} was cancelled before it ran")
    if job.status == "failed":
        code = 422 if job.error and job.error.startswith(("ValueError", "FieldError")) else 500
        raise HTTPException(code, detail=job.error)


def same_name_fields(req, processing_class) -> dict:
    """The request's values for the Processing fields of the same name (A1111 uses one set of names for both).

    Only fields the request model declares are read, never a client's extra keys (which could name internals
    such as outpath_samples); a None value leaves the Processing default.
    """
    accepted = {f.name for f in dataclasses.fields(processing_class) if f.init} - SET_BY_HAND
    return {name: getattr(req, name) for name in type(req).model_fields
            if name in accepted and getattr(req, name) is not None}


def check_txt2img(req: Txt2ImgRequest):
    """Build the Processing object and check every field; ValueError names the field and what is allowed."""
    from modules import processing, scripts

    script_args = scripts.api_script_args(scripts.scripts_txt2img, req.script_name, req.script_args,
                                          req.alwayson_scripts)
    if req.denoising_strength is not None and not 0.0 <= req.denoising_strength <= 1.0:
        raise ValueError(f"denoising_strength must be between 0 and 1, got {req.denoising_strength!r}")
    check_overrides(req.override_settings)
    fields = same_name_fields(req, processing.StableDiffusionProcessingTxt2Img)
    fields["sampler_name"] = req.sampler_name or req.sampler_index or "Euler"
    fields["do_not_save_samples"] = not req.save_images
    fields["do_not_save_grid"] = not req.save_images   # A1111: the batch grid is made (and returned first) only then
    fields["task_id"] = req.force_task_id
    # A1111 reads denoising_strength in txt2img only for the hires pass
    fields["denoising_strength"] = req.denoising_strength if req.enable_hr else None
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    processing.validate(p, shared.models.current_family())
    p.script_args = script_args
    return p


def check_img2img(req: Img2ImgRequest):
    """img2img's Processing object: the images decoded (422 naming init_images[i] / mask), every field checked."""
    from modules import processing, scripts

    script_args = scripts.api_script_args(scripts.scripts_img2img, req.script_name, req.script_args,
                                          req.alwayson_scripts)
    if not req.init_images:
        raise ValueError("init_images: at least one base64 image is required")
    check_overrides(req.override_settings)
    images = [image_input.decode_image(f"init_images[{i}]", value) for i, value in enumerate(req.init_images)]
    mask = image_input.decode_image("mask", req.mask) if req.mask else None
    fields = same_name_fields(req, processing.StableDiffusionProcessingImg2Img)
    fields["denoising_strength"] = req.denoising_strength
    fields["sampler_name"] = req.sampler_name or req.sampler_index or "Euler"
    fields["do_not_save_samples"] = not req.save_images
    fields["do_not_save_grid"] = not req.save_images   # A1111: the batch grid is made (and returned first) only then
    fields["task_id"] = req.force_task_id
    if req.mask_blur is not None:
        fields["mask_blur"] = req.mask_blur
    p = processing.StableDiffusionProcessingImg2Img(init_images=images, mask=mask, **fields)
    processing.validate(p, shared.models.current_family())
    p.script_args = script_args
    return p


def check_overrides(overrides: dict) -> None:
    for key, value in overrides.items():
        if key == "sd_model_checkpoint":
            if shared.models.find(value) is None:
                raise ValueError(f"override_settings.sd_model_checkpoint: no checkpoint named {value!r}; "
                                 f"available: {shared.models.checkpoint_titles()}")
            continue
        try:
            shared.opts.validate(key, value)
        except ValueError as exc:
            raise ValueError(f"override_settings.{key}: {exc}") from None
        info = shared.opts.data_labels.get(key)
        if info is not None and info.restrict_api:
            raise ValueError(f"override_settings.{key}: this setting cannot be changed through the API")


def generation_job(p):
    """Job body: load the checkpoint that override_settings asks for (restored afterwards), then generate."""
    from modules import scripts

    def body(job):
        wanted = p.override_settings.get("sd_model_checkpoint")
        previous = shared.models.current.checkpoint if shared.models.current is not None else None
        if wanted:
            shared.models.load_now(shared.models.find(wanted))
        try:
            return scripts.run_with_scripts(p, p.script_args or None)   # extension scripts, then process_images
        finally:
            if wanted and p.override_settings_restore_afterwards and previous is not None:
                shared.models.load_now(previous)

    return body


def info_json(result, task_id: str, p=None) -> str:
    info = json.loads(result.js())
    info["task_id"] = task_id
    if p is not None:   # A1111 reports the strength the job used (img2img, hires fix); None otherwise
        info["denoising_strength"] = p.denoising_strength
    # problems that did not stop the job (unknown LoRA, a failing extension hook); A1111 has them only in `comments`
    info["warnings"] = list(getattr(result, "warnings", None) or [])
    return json.dumps(info)


async def run_generation(req, check, label: str, parameters: dict, request: Request | None = None) -> dict:
    """Validate (422), queue (409 on a duplicate task id), wait, and answer A1111's response shape.

    If the client disconnects while waiting, its job is withdrawn (see `wait_for`).
    """
    # Checking and encoding run in a worker thread: the first check imports torch, which
    # waits for the model loader's own import, and large PNGs take a while to encode;
    # on the event loop either would stall every other request (the page's progress polls).
    try:
        p = await asyncio.to_thread(check, req)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc))
    try:
        job = shared.queue.submit(generation_job(p), task_id=req.force_task_id, label=label)
    except ValueError as exc:
        raise HTTPException(409, detail=str(exc))
    if not await wait_for(job, request):
        # 499 (nginx's "client closed request"): nobody reads it, but access logs show what happened
        return JSONResponse(status_code=499, content={"detail": f"client disconnected; job {job.id} withdrawn"})
    raise_for_job(job)
    result = job.result
    images = (await asyncio.to_thread(lambda: [image_input.encode_png(img, text)
                                               for img, text in zip(result.images, result.infotexts)])
              if req.send_images else [])
    return {"images": images, "parameters": parameters, "info": info_json(result, job.id, p)}


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    @router.post("/txt2img")
    async def txt2img(req: Txt2ImgRequest, request: Request):
        return await run_generation(req, check_txt2img, "txt2img", req.model_dump(), request)

    @router.post("/img2img")
    async def img2img(req: Img2ImgRequest, request: Request):
        parameters = req.model_dump()
        if not req.include_init_images:   # A1111 leaves the (large) inputs out of the echo unless asked
            parameters["init_images"], parameters["mask"] = None, None
        return await run_generation(req, check_img2img, "img2img", parameters, request)

    @router.post("/png-info")
    def png_info(req: PngInfoRequest):
        from modules import images, infotext

        if not req.image.strip():
            return {"info": "", "items": {}, "parameters": {}}
        try:
            image = image_input.decode_image("image", req.image)
        except image_input.FieldError as exc:
            raise HTTPException(422, detail=str(exc))
        text = images.read_infotext(image)
        items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        return {"info": text or "", "items": items, "parameters": infotext.parse_infotext(text) if text else {}}

    @router.get("/progress")
    def progress(skip_current_image: bool = False, id_task: str | None = None):
        """The named job's progress (or the running one's): queued with its place, running, or ended."""
        job = shared.queue.get(id_task) if id_task else shared.queue.current
        if id_task and job is None:
            raise HTTPException(404, detail=f"no job with id {id_task!r} (unknown, or finished long ago)")
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": _idle_state(), "current_image": None,
                    "textinfo": None, "current_task": None, "status": "idle", "queue_position": 0,
                    "queue_length": len(shared.queue.queued())}
        state = job.progress
        image = None
        if not skip_current_image and state.preview is not None and not job.finished:
            buffer = io.BytesIO()
            state.preview.save(buffer, format="PNG")
            image = base64.b64encode(buffer.getvalue()).decode("ascii")
        place, length = shared.queue.position(job.id)
        return {"progress": 1.0 if job.finished else state.fraction(), "eta_relative": state.eta() or 0.0,
                "state": state.dict(), "current_image": image, "textinfo": state.textinfo or None,
                "current_task": job.id, "status": job.status, "queue_position": place, "queue_length": length,
                "active": job.status == "running", "queued": job.status == "queued", "completed": job.finished}

    @router.post("/interrupt")
    def interrupt():
        """Stop the running job at its next step (its finished images are returned); queued jobs stay."""
        shared.queue.interrupt()
        return {}

    @router.post("/skip")
    def skip():
        shared.queue.skip()
        return {}

    @router.get("/options")
    def get_options():
        return shared.opts.as_dict()

    @router.post("/options")
    async def set_options(request: Request):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(422, detail="body: not valid JSON")
        if not isinstance(body, dict):
            raise HTTPException(422, detail="body must be a JSON object of setting names to values")
        try:
            check_option_values(body)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc))
        # a queue job: applied after the running job, never in the middle of one
        job = shared.queue.submit(lambda job: apply_options(dict(body)), label="options")
        await wait_for(job)
        raise_for_job(job)
        return None

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        shared.models.refresh()
        return {}

    @router.post("/refresh-vae")
    def refresh_vae():
        return {}   # /sd-vae reads the folder on every call: there is nothing to refresh

    @router.post("/unload-checkpoint")
    async def unload_checkpoint():
        from modules import upscalers

        # the upscaler model too: a client unloading wants the memory back
        job = shared.queue.submit(lambda job: (shared.models.unload_now(), upscalers.unload()),
                                  label="unload checkpoint")
        await wait_for(job)
        raise_for_job(job)
        return {}

    @router.post("/reload-checkpoint")
    async def reload_checkpoint():
        try:
            job = shared.models.request_load(getattr(shared.opts, "sd_model_checkpoint", None) or None)
        except ValueError as exc:
            raise HTTPException(422, detail=f"sd_model_checkpoint: {exc}")
        await wait_for(job)
        raise_for_job(job)
        return {}

    return router


def check_option_values(body: dict) -> None:
    for key, value in body.items():
        if key == "sd_model_checkpoint":
            if shared.models.find(value) is None:
                raise ValueError(f"sd_model_checkpoint: no checkpoint named {value!r}; "
                                 f"available: {shared.models.checkpoint_titles()}")
            continue
        info = shared.opts.data_labels.get(key)
        if info is None:
            raise ValueError(f"{key}: unknown setting")
        if info.restrict_api:
            raise ValueError(f"{key}: this setting cannot be changed through the API")
        shared.opts.validate(key, value)


def apply_options(body: dict) -> None:
    """Runs on the worker: switch checkpoint first (it sets sd_model_checkpoint), then the rest, then save."""
    checkpoint = body.pop("sd_model_checkpoint", None)
    if checkpoint:
        shared.models.load_now(shared.models.find(checkpoint))
    for key, value in body.items():
        shared.opts.set(key, value, is_api=True)
    shared.opts.save(shared.paths.config_file)


def _idle_state() -> dict:
    from modules.jobs import JobState

    state = JobState().dict()
    state["job_timestamp"] = "0"
    return state


async def _validation_error(request: Request, exc: RequestValidationError):
    """422 with FastAPI's error list plus one line naming each bad field and what it got."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(x) for x in error.get("loc", ()) if x != "body") or "body"
        parts.append(f"{field}: {error.get('msg')} (got {error.get('input')!r})"[:300])
    return JSONResponse(status_code=422, content={"detail": exc.errors() and _jsonable(exc.errors()),
                                                  "error": "; ".join(parts)})


def _jsonable(errors) -> list:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={Exception: str})


def mount(app: FastAPI) -> None:
    """Add the A1111 API, its lists, and Easel's queue routes to `app`."""
    app.include_router(create_router())
    app.include_router(listings.create_router())
    app.include_router(queue_routes.create_router())
    from modules.api import extras_routes   # upscaling finished images (A1111's extras API)

    app.include_router(extras_routes.create_router())
    app.add_exception_handler(RequestValidationError, _validation_error)

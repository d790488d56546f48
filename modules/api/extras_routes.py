"""/sdapi/v1/extra-single-image and /sdapi/v1/extra-batch-images: A1111's extras API.

Fields, defaults and response shapes are A1111's. The work is a job on the
shared queue (modules/postprocessing.py), so it waits for a running
generation instead of competing with it. Like A1111's API, nothing is saved
to disk. Face restoration (gfpgan/codeformer) does not exist in Easel: a
visibility above 0 is a 422 rather than a silently unrestored image.
"""
from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field


class ExtrasBaseRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    resize_mode: int = Field(0, description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field("", description="base64 image, raw or as a data:image/...;base64, URI")


class ImageItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: str = ""
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[ImageItem] = Field(default_factory=list)  # noqa: N815 (A1111's name)


SETTINGS_FIELDS = ("resize_mode", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h", "upscaling_crop",
                   "upscaler_1", "upscaler_2", "extras_upscaler_2_visibility")


def _settings(req: ExtrasBaseRequest):
    from modules import postprocessing

    for name in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(req, name):
            raise ValueError(f"{name}: face restoration (GFPGAN/CodeFormer) is not available in Easel; send 0")
    return postprocessing.ExtrasSettings(**{name: getattr(req, name) for name in SETTINGS_FIELDS})


async def _run(items, settings) -> list:
    from modules import postprocessing
    from modules.api.routes import raise_for_job, wait_for

    try:
        job = postprocessing.submit(items, settings, save_dir=None, label="extras")
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc))
    await wait_for(job)
    raise_for_job(job)
    return job.result or []


def _html(results) -> str:
    from modules import postprocessing

    return postprocessing.html_info(results[-1].keys) if results else ""


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["extras"])

    @router.post("/extra-single-image")
    async def extra_single_image(req: ExtrasSingleImageRequest):
        from modules.api import image_input

        try:
            settings = _settings(req)
            image = image_input.decode_image("image", req.image)
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc))
        results = await _run([(image, None)], settings)
        if not results:
            raise HTTPException(409, detail="the extras job was interrupted before the image was finished")
        return {"html_info": _html(results), "image": image_input.encode_png(results[0].image, results[0].infotext)}

    @router.post("/extra-batch-images")
    async def extra_batch_images(req: ExtrasBatchImagesRequest):
        from modules.api import image_input

        try:
            settings = _settings(req)
            if not req.imageList:
                raise ValueError("imageList: at least one {data, name} image is required")
            items = [(image_input.decode_image(f"imageList[{i}].data", item.data), item.name or None)
                     for i, item in enumerate(req.imageList)]
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc))
        results = await _run(items, settings)
        return {"html_info": _html(results),
                "images": [image_input.encode_png(r.image, r.infotext) for r in results]}

    return router

"""POST /v1/denoise: one image in, the denoised image out (images up to the synchronous limit)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from invdn.io.formats import OUTPUT_MEDIA_TYPES
from invdn_service.deps import DisconnectDep, MetricsDep, ModelsDep, SchedulerDep, SettingsDep, WantsJSONDep
from invdn_service.errors import TooLargeForSync
from invdn_service.jobs import (
    base64_text,
    check_output_format,
    denoise_tiles,
    encode_output,
)
from invdn_service.routes.common import ERROR_RESPONSES, DenoiseForm, NoisyUpload
from invdn_service.routing import UploadRoute
from invdn_service.schemas import DenoiseJSON
from invdn_service.uploads import check_image, decode, read_upload

router = APIRouter(prefix="/v1", tags=["denoise"], route_class=UploadRoute)

IMAGE_RESPONSE = {
    "description": "The denoised image (or JSON with it in base64 for `Accept: application/json`).",
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in OUTPUT_MEDIA_TYPES},
        "application/json": {"schema": DenoiseJSON.model_json_schema(ref_template="#/components/schemas/{model}")},
    },
    "headers": {
        "X-Model": {"description": "Model that denoised the image (canonical name).", "schema": {"type": "string"}},
        "X-Parameters": {"description": "Its parameter count.", "schema": {"type": "integer"}},
        "X-Inference-Ms": {"description": "Model time in milliseconds.", "schema": {"type": "number"}},
    },
}


@router.post(
    "/denoise",
    summary="Denoise an image",
    response_class=Response,
    responses={200: IMAGE_RESPONSE, **ERROR_RESPONSES},
)
async def denoise(
    file: NoisyUpload,
    settings: SettingsDep,
    models: ModelsDep,
    scheduler: SchedulerDep,
    metrics: MetricsDep,
    json_wanted: WantsJSONDep,
    client_gone: DisconnectDep,
    form: DenoiseForm,
) -> Response:
    """Returns the image denoised by `model`, with headers X-Model, X-Parameters and X-Inference-Ms. Images over
    the synchronous limit (`limits.sync_max_pixels` of /v1/models) are refused with 413: send them to /v1/jobs."""
    data = await read_upload(file, settings.max_upload_bytes)
    header = check_image(data, settings.allowed_formats, settings.max_pixels)
    if header.pixels > settings.sync_max_pixels:
        raise TooLargeForSync(
            f"image is {header.width}x{header.height} = {header.pixels} pixels; /v1/denoise answers up to "
            f"{settings.sync_max_pixels} pixels: send it to POST /v1/jobs (up to {settings.max_pixels} pixels)"
        )
    model, options = form
    loaded = models.get(model)
    with scheduler.admitted(header.pixels):
        image = await asyncio.to_thread(decode, data, settings.max_pixels)
        del data
        check_output_format(image, options.format)
        work = denoise_tiles(loaded, image.pixels, options, settings.schedule_tile, metrics)
        denoised = await scheduler.run(work, header.pixels, client_gone)
        out = await asyncio.to_thread(encode_output, image, denoised, options.format)
    headers = {
        "X-Model": loaded.name,
        "X-Parameters": str(loaded.parameters),
        "X-Inference-Ms": f"{out.inference_ms:.1f}",
    }
    if json_wanted:
        body = DenoiseJSON(
            model=loaded.name,
            parameters=loaded.parameters,
            pretrained=loaded.pretrained,
            inference_ms=round(out.inference_ms, 1),
            width=out.width,
            height=out.height,
            format=out.format,
            media_type=out.media_type,
            image_base64=base64_text(out.data),
        )
        return JSONResponse(body.model_dump(), headers=headers)
    headers["Content-Disposition"] = f'inline; filename="denoised-{loaded.name}.{out.extension}"'
    return Response(out.data, media_type=out.media_type, headers=headers)

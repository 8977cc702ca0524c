"""POST /v1/denoise: one image in, the denoised image out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import JSONResponse

from service.deps import MetricsDep, ModelsDep, QueueDep, SettingsDep, WantsJSONDep
from service.jobs import MEDIA_TYPES, DenoiseOptions, base64_text, denoise_job
from service.routes.common import ERROR_RESPONSES
from service.routing import UploadRoute
from service.schemas import MAX_SAMPLES, MAX_SEED, DenoiseJSON, ModelName, OutputFormat
from service.uploads import check_image, read_upload

router = APIRouter(prefix="/v1", tags=["denoise"], route_class=UploadRoute)

IMAGE_RESPONSE = {
    "description": "The denoised image (or JSON with it in base64 for `Accept: application/json`).",
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(set(MEDIA_TYPES.values()))},
        "application/json": {"schema": DenoiseJSON.model_json_schema(ref_template="#/components/schemas/{model}")},
    },
    "headers": {
        "X-Model": {"description": "Model that denoised the image.", "schema": {"type": "string"}},
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
    file: Annotated[UploadFile, File(description="The noisy image: PNG, JPEG, WebP, TIFF, BMP or GIF.")],
    settings: SettingsDep,
    models: ModelsDep,
    queue: QueueDep,
    metrics: MetricsDep,
    json_wanted: WantsJSONDep,
    model: Annotated[ModelName, Form(description="invdn (default) or danet (DANet-R).")] = "invdn",
    samples: Annotated[int, Form(ge=1, le=MAX_SAMPLES, description="InvDN latent draws averaged.")] = 1,
    ensemble: Annotated[bool, Form(description="Average the 8 flips/rotations (8x slower).")] = False,
    format: Annotated[OutputFormat, Form(description="Output format; keep = the upload's format.")] = "png",
    seed: Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of InvDN's latent draws.")] = 0,
) -> Response:
    """Returns the image denoised by `model`, with headers X-Model, X-Parameters and X-Inference-Ms."""
    data = await read_upload(file, settings.max_upload_bytes)
    check_image(data, settings.allowed_formats, settings.max_pixels)
    loaded = models.get(model)
    options = DenoiseOptions(samples=samples, ensemble=ensemble, seed=seed, format=format)
    out = await queue.run(denoise_job, data, loaded, options, settings.max_pixels, metrics)
    headers = {
        "X-Model": loaded.name,
        "X-Parameters": str(loaded.parameters),
        "X-Inference-Ms": f"{out.inference_ms:.1f}",
    }
    if json_wanted:
        body = DenoiseJSON(
            model=model,
            parameters=loaded.parameters,
            pretrained=bool(getattr(loaded.module, "pretrained", False)),
            inference_ms=round(out.inference_ms, 1),
            width=out.width,
            height=out.height,
            format=out.format,
            media_type=out.media_type,
            image_base64=base64_text(out.data),
        )
        return JSONResponse(body.model_dump(), headers=headers)
    extension = {"JPEG": "jpg", "TIFF": "tif"}.get(out.format, out.format.lower())
    headers["Content-Disposition"] = f'inline; filename="denoised.{extension}"'
    return Response(out.data, media_type=out.media_type, headers=headers)

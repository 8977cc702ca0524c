"""POST /v1/compare: InvDN against DANet-R on one image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.deps import MetricsDep, ModelsDep, QueueDep, SettingsDep
from service.jobs import CompareOptions, compare_job
from service.routes.common import ERROR_RESPONSES
from service.routing import UploadRoute
from service.schemas import MAX_SAMPLES, MAX_SEED, CompareJSON, NoiseKind
from service.uploads import check_image, read_upload

router = APIRouter(prefix="/v1", tags=["compare"], route_class=UploadRoute)


@router.post("/compare", summary="Compare InvDN and DANet-R", response_model=CompareJSON, responses=ERROR_RESPONSES)
async def compare(
    file: Annotated[UploadFile, File(description="The image: noisy, or clean when synthetic noise is asked for.")],
    settings: SettingsDep,
    models: ModelsDep,
    queue: QueueDep,
    metrics: MetricsDep,
    reference: Annotated[UploadFile | None, File(description="Optional clean version of `file`.")] = None,
    sigma: Annotated[
        float | None,
        Form(ge=0, le=255, description="Without a reference: add AWGN of this level (0-255 scale) to `file`."),
    ] = None,
    noise: Annotated[NoiseKind, Form(description="awgn (uses sigma) or camera (realistic sRGB noise).")] = "awgn",
    seed: Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of the synthetic noise and InvDN.")] = 0,
    samples: Annotated[int, Form(ge=1, le=MAX_SAMPLES, description="InvDN latent draws averaged.")] = 1,
) -> dict:
    """PSNR and SSIM (when a reference exists), time, parameters and FLOPs of both models, with the images."""
    data = await read_upload(file, settings.max_upload_bytes)
    check_image(data, settings.allowed_formats, settings.compare_max_pixels)
    clean = None
    if reference is not None:
        clean = await read_upload(reference, settings.max_upload_bytes)
        check_image(clean, settings.allowed_formats, settings.compare_max_pixels)
    loaded = {name: models.get(name) for name in ("invdn", "danet")}
    options = CompareOptions(sigma=sigma, noise=noise, seed=seed, samples=samples)
    return await queue.run(compare_job, data, clean, loaded, options, settings.compare_max_pixels, metrics)

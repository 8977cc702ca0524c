"""POST /v1/compare: every served model on one image, side by side."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from invdn_service.deps import DisconnectDep, MetricsDep, ModelsDep, SchedulerDep, SettingsDep
from invdn_service.jobs import CompareOptions, compare_result, compare_tiles, prepare_compare
from invdn_service.routes.common import ERROR_RESPONSES, SamplesField
from invdn_service.routing import UploadRoute
from invdn_service.schemas import MAX_SEED, CompareJSON, NoiseKind
from invdn_service.uploads import check_image, read_upload

router = APIRouter(prefix="/v1", tags=["compare"], route_class=UploadRoute)


@router.post("/compare", summary="Compare the models", response_model=CompareJSON, responses=ERROR_RESPONSES)
async def compare(
    file: Annotated[UploadFile, File(description="The image: noisy, or clean when synthetic noise is asked for.")],
    settings: SettingsDep,
    models: ModelsDep,
    scheduler: SchedulerDep,
    metrics: MetricsDep,
    client_gone: DisconnectDep,
    reference: Annotated[UploadFile | None, File(description="Optional clean version of `file`.")] = None,
    sigma: Annotated[
        float | None,
        Form(ge=0, le=255, description="Without a reference: add AWGN of this level (0-255 scale) to `file`."),
    ] = None,
    noise: Annotated[NoiseKind, Form(description="awgn (uses sigma) or camera (realistic sRGB noise).")] = "awgn",
    seed: Annotated[int, Form(ge=0, le=MAX_SEED, description="Seed of the synthetic noise and the latent draws.")] = 0,
    samples: SamplesField = 1,
) -> dict:
    """PSNR and SSIM (with a reference or synthetic noise), time, parameters and FLOPs of every model, with the
    images. Each model runs through the same tiles as /v1/denoise, so its output here is the one you download."""
    data = await read_upload(file, settings.max_upload_bytes)
    header = check_image(data, settings.allowed_formats, settings.compare_max_pixels)
    clean = None
    if reference is not None:
        clean = await read_upload(reference, settings.max_upload_bytes)
        check_image(clean, settings.allowed_formats, settings.compare_max_pixels)
    served = models.all()
    options = CompareOptions(sigma=sigma, noise=noise, seed=seed, samples=samples)
    with scheduler.admitted(header.pixels * len(served)):
        prepared = await asyncio.to_thread(prepare_compare, data, clean, options, settings.compare_max_pixels)
        work = compare_tiles(served, prepared, options, settings.schedule_tile, metrics)
        outputs = await scheduler.run(work, header.pixels * len(served), client_gone)
        return await asyncio.to_thread(compare_result, served, prepared, outputs, options)

"""Asynchronous jobs for big images: POST /v1/jobs, GET /v1/jobs/{job_id}, GET .../result, DELETE /v1/jobs/{job_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from invdn.io.formats import OUTPUT_MEDIA_TYPES
from invdn_service.deps import JobsDep, MetricsDep, ModelsDep, SchedulerDep, SettingsDep
from invdn_service.errors import JobNotFinished
from invdn_service.jobstore import JOB_ID_PATTERN, Job, JobStore
from invdn_service.routes.common import ERROR_RESPONSES, DenoiseForm, NoisyUpload
from invdn_service.routing import JobUploadRoute
from invdn_service.schemas import ErrorBody, JobError, JobJSON
from invdn_service.uploads import check_image, read_upload

upload_router = APIRouter(prefix="/v1", tags=["jobs"], route_class=JobUploadRoute)
router = APIRouter(prefix="/v1", tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The id POST /v1/jobs answered.")]
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such job (never made, deleted or expired)."}}
INVALID_ID = {422: {"model": ErrorBody, "description": "Not a job id (32 hexadecimal digits)."}}


def job_json(job: Job, store: JobStore, request: Request) -> JobJSON:
    status_url = str(request.url_for("job_status", job_id=job.id).path)
    output = job.output
    return JobJSON(
        id=job.id,
        status=job.status,
        model=job.model.name,
        width=job.width,
        height=job.height,
        tiles_done=job.progress.done,
        tiles_total=job.progress.total,
        progress=round(job.progress.fraction, 4) if job.status != "done" else 1.0,
        created_at=round(job.created, 3),
        expires_at=None if job.ended is None else round(store.expires_at(job) or 0.0, 3),
        status_url=status_url,
        result_url=f"{status_url}/result" if output is not None else None,
        inference_ms=round(output.inference_ms, 1) if output is not None else None,
        error=JobError(detail=job.error_detail or "", code=job.error_code or "") if job.status == "failed" else None,
    )


@upload_router.post(
    "/jobs",
    summary="Start a denoising job",
    status_code=202,
    response_model=JobJSON,
    responses={
        202: {"headers": {"Location": {"description": "The job's status URL.", "schema": {"type": "string"}}}},
        **ERROR_RESPONSES,
    },
)
async def create_job(
    request: Request,
    file: NoisyUpload,
    settings: SettingsDep,
    models: ModelsDep,
    scheduler: SchedulerDep,
    metrics: MetricsDep,
    jobs: JobsDep,
    form: DenoiseForm,
) -> JSONResponse:
    """Accepts an image of any size up to `limits.max_pixels` and answers 202 at once with the job's status URL
    (also in `Location`); poll it for progress, fetch `result_url` when done, DELETE it to cancel."""
    data = await read_upload(file, settings.max_upload_bytes)
    header = check_image(data, settings.allowed_formats, settings.max_pixels)
    model, options = form
    loaded = models.get(model)
    job = jobs.start(
        data,
        loaded,
        options,
        (header.width, header.height),
        scheduler,
        settings.max_pixels,
        settings.schedule_tile,
        metrics,
    )
    body = job_json(job, jobs, request)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.status_url})


@router.get("/jobs/{job_id}", summary="A job's status", response_model=JobJSON, responses={**NOT_FOUND, **INVALID_ID})
async def job_status(job_id: JobId, jobs: JobsDep, request: Request) -> JobJSON:
    """Status, progress (tiles done of total) and, once done, the result's URL and model time."""
    return job_json(jobs.get(job_id), jobs, request)


@router.get(
    "/jobs/{job_id}/result",
    summary="A finished job's image",
    response_class=Response,
    responses={
        200: {
            "description": "The denoised image.",
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in OUTPUT_MEDIA_TYPES},
        },
        409: {"model": ErrorBody, "description": "The job has not finished, failed or was cancelled."},
        **NOT_FOUND,
        **INVALID_ID,
    },
)
async def job_result(job_id: JobId, jobs: JobsDep) -> Response:
    """The denoised image of a finished job, with X-Model and X-Inference-Ms."""
    job = jobs.get(job_id)
    if job.output is None:
        why = job.error_detail if job.status == "failed" else None
        raise JobNotFinished(f"job {job.id} is {job.status}" + (f": {why}" if why else "; poll its status"))
    out = job.output
    headers = {
        "X-Model": job.model.name,
        "X-Inference-Ms": f"{out.inference_ms:.1f}",
        "Content-Disposition": f'attachment; filename="denoised-{job.model.name}.{out.extension}"',
    }
    return Response(out.data, media_type=out.media_type, headers=headers)


@router.delete(
    "/jobs/{job_id}", summary="Cancel and delete a job", response_model=JobJSON, responses={**NOT_FOUND, **INVALID_ID}
)
async def delete_job(job_id: JobId, jobs: JobsDep, scheduler: SchedulerDep, request: Request) -> JobJSON:
    """Cancels a running job (its remaining tiles never run) and deletes it with its result; answers its last
    status (`cancelled` for a job that was still running)."""
    job = jobs.get(job_id)
    jobs.cancel(job, scheduler)
    body = job_json(job, jobs, request)
    if not job.finished:
        body.status = "cancelled"
    jobs.remove(job)
    return body

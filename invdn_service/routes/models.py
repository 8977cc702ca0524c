"""GET /v1/models: the served models (every entry of invdn.models.registry) and the upload limits."""

from __future__ import annotations

from fastapi import APIRouter

from invdn_service.deps import ModelsDep, SettingsDep
from invdn_service.routes.common import ERROR_RESPONSES
from invdn_service.schemas import MAX_SAMPLES, Limits, ModelInfo, ModelsJSON

router = APIRouter(prefix="/v1", tags=["models"])


def _weights_info(name: str) -> dict:
    from invdn.models.weights import weights_info

    info = dict(weights_info(name))
    info.pop("path", None)  # server paths stay private; "file" names the shipped file
    return info


@router.get("/models", summary="Served models", response_model=ModelsJSON, responses={503: ERROR_RESPONSES[503]})
async def list_models(models: ModelsDep, settings: SettingsDep) -> ModelsJSON:
    """Every model with its label, configuration, parameter count, weights sha256 and the model card's numbers."""
    infos = [
        ModelInfo(
            name=loaded.name,
            label=loaded.spec.label,
            aliases=list(loaded.spec.aliases),
            description=loaded.spec.description,
            stochastic=loaded.spec.stochastic,
            model_type=str(getattr(loaded.module, "model_type", loaded.spec.model_type)),
            pretrained=loaded.pretrained,
            parameters=loaded.parameters,
            flops_per_megapixel=loaded.flops_per_megapixel,
            config=dict(getattr(loaded.module, "model_args", {}) or {}),
            weights=_weights_info(loaded.name),
        )
        for loaded in models.all()
    ]
    limits = Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_pixels,
        sync_max_pixels=min(settings.sync_max_pixels, settings.max_pixels),
        compare_max_pixels=settings.compare_max_pixels,
        max_samples=MAX_SAMPLES,
        formats=settings.allowed_formats,
    )
    return ModelsJSON(models=infos, limits=limits)

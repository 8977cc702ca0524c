"""What `invdn info` reports: every registry model's configuration, parameter count, FLOPs per megapixel and
weights, its size against DANet's, and the plain-text table of it all."""

from __future__ import annotations

from typing import Any

FLOPS_METHOD = (
    "torch.utils.flop_counter on one model.denoise call (samples=1, no ensemble) on a 64x64 input, scaled to "
    "1 MP: InvDN = encode + decode, InvDN-LC = encode + cleaner + decode, DANet-R = one U-Net pass "
    "(invdn.models.flops.flops_per_megapixel)"
)


def gather_info() -> dict[str, Any]:
    """Models (registry models at their default configuration, then DANet's G, discriminator and total), the
    registry models' parameter ratios to DANet-R and to all of DANet, and how FLOPs were counted."""
    from invdn.models import registry
    from invdn.models.danet import danet_parameter_counts
    from invdn.models.flops import count_parameters, flops_per_megapixel
    from invdn.models.weights import weights_info

    models: dict[str, dict[str, Any]] = {}
    for spec in registry.MODELS:
        net = spec.build({})
        models[spec.name] = {
            "label": spec.label,
            "description": spec.description,
            "config": net.model_args,
            "parameters": count_parameters(net),
            "flops_per_megapixel": flops_per_megapixel(net),
            "weights": weights_info(spec.name),
        }
    danet = danet_parameter_counts()
    models["danet-g"] = {"parameters": danet["g"]}
    models["danet-discriminator"] = {"parameters": danet["discriminator"]}
    models["danet-total"] = {"parameters": danet["total"]}
    n_r = models["danet-r"]["parameters"]
    ratios = {
        name: {
            "over_danet_r": models[name]["parameters"] / n_r,
            "over_danet_all": models[name]["parameters"] / danet["total"],
        }
        for name in registry.names()
        if name != "danet-r"
    }
    return {"models": models, "ratios": ratios, "flops_method": FLOPS_METHOD}


def _weights_text(weights: dict[str, Any] | None) -> str:
    if weights is None:
        return ""
    return weights.get("file", "?") if weights.get("shipped") else "random init (none shipped)"


def format_info(data: dict[str, Any]) -> str:
    """`gather_info()` as the table `invdn info` prints: parameters, GFLOP/MP and weights; ratios; configs."""
    models = data["models"]
    lines = [f"{'model':<22}{'parameters':>14}{'GFLOP/MP':>12}  weights"]
    for name, row in models.items():
        flops = f"{row['flops_per_megapixel'] / 1e9:,.0f}" if "flops_per_megapixel" in row else ""
        lines.append(f"{name:<22}{row['parameters']:>14,}{flops:>12}  {_weights_text(row.get('weights'))}")
    lines.append(f"\n{'model':<22}{'/ DANet-R':>12}{'/ DANet (R+G+D)':>18}")
    for name, ratio in data["ratios"].items():
        lines.append(f"{name:<22}{100 * ratio['over_danet_r']:>11.1f}%{100 * ratio['over_danet_all']:>17.2f}%")
    for name, row in models.items():
        if "config" in row:
            lines.append(f"\n{name} config: {row['config']}")
    return "\n".join(lines)

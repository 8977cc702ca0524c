"""`invdn info`: every registry model's configuration, parameter count and measured FLOPs per megapixel."""

from __future__ import annotations

import json

import click


def gather_info() -> dict:
    from invdn.models import registry
    from invdn.models.danet import DANetConfig, Discriminator, UNetG
    from invdn.models.flops import count_parameters, flops_per_megapixel
    from invdn.models.weights import weights_info

    models: dict[str, dict] = {}
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
    danet_cfg = DANetConfig()
    n_r = models["danet-r"]["parameters"]
    n_g, n_d = count_parameters(UNetG(danet_cfg)), count_parameters(Discriminator())
    total = n_r + n_g + n_d
    models["danet-g"] = {"parameters": n_g}
    models["danet-discriminator"] = {"parameters": n_d}
    models["danet-total"] = {"parameters": total}
    ratios = {
        name: {"over_danet_r": models[name]["parameters"] / n_r, "over_danet_all": models[name]["parameters"] / total}
        for name in registry.names()
        if name != "danet-r"
    }
    return {
        "models": models,
        "ratios": ratios,
        "flops_method": "torch.utils.flop_counter on a 64x64 input through the model's forward (one denoise "
        "pass: InvDN = encode + decode, InvDN-LC = encode + cleaner + decode), scaled to 1 MP",
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(as_json: bool) -> None:
    """Show model configurations, parameter counts, FLOPs per megapixel and ratios to DANet."""
    data = gather_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    m = data["models"]
    click.echo(f"{'model':<22}{'parameters':>14}{'GFLOP/MP':>12}  weights")
    for name, row in m.items():
        flops = f"{row['flops_per_megapixel'] / 1e9:,.0f}" if "flops_per_megapixel" in row else ""
        w = row.get("weights")
        wtxt = "" if w is None else (w.get("file", "?") if w.get("shipped") else "random init (none shipped)")
        click.echo(f"{name:<22}{row['parameters']:>14,}{flops:>12}  {wtxt}")
    click.echo(f"\n{'model':<22}{'/ DANet-R':>12}{'/ DANet (R+G+D)':>18}")
    for name, r in data["ratios"].items():
        click.echo(f"{name:<22}{100 * r['over_danet_r']:>11.1f}%{100 * r['over_danet_all']:>17.2f}%")
    for name, row in m.items():
        if "config" in row:
            click.echo(f"\n{name} config: {row['config']}")

"""`invdn info`: every model's configuration, parameter count and measured FLOPs per megapixel."""

from __future__ import annotations

import json

import click


def gather_info() -> dict:
    from invdn.danet import DANetConfig, Discriminator, UNetD, UNetG
    from invdn.flops import flops_per_megapixel
    from invdn.model import InvDN, InvDNConfig, count_parameters
    from invdn.weights import weights_info

    invdn_cfg = InvDNConfig()
    invdn = InvDN(invdn_cfg)
    danet_cfg = DANetConfig()
    r, g, d = UNetD(danet_cfg), UNetG(danet_cfg), Discriminator()
    n_invdn = count_parameters(invdn)
    n_r, n_g, n_d = count_parameters(r), count_parameters(g), count_parameters(d)
    total = n_r + n_g + n_d
    return {
        "models": {
            "invdn": {
                "config": invdn.model_args,
                "parameters": n_invdn,
                "flops_per_megapixel": flops_per_megapixel(invdn),
                "weights": weights_info("invdn"),
            },
            "danet-r": {
                "config": r.model_args,
                "parameters": n_r,
                "flops_per_megapixel": flops_per_megapixel(r),
                "weights": weights_info("danet-r"),
            },
            "danet-g": {"parameters": n_g},
            "danet-discriminator": {"parameters": n_d},
            "danet-total": {"parameters": total},
        },
        "ratios": {
            "invdn_over_danet_r": n_invdn / n_r,
            "invdn_over_danet_all": n_invdn / total,
        },
        "flops_method": "torch.utils.flop_counter on a 64x64 input, scaled to 1 MP; InvDN = encode + decode",
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(as_json: bool) -> None:
    """Show model configurations, parameter counts and FLOPs per megapixel."""
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
    r = data["ratios"]
    click.echo(f"\nInvDN / DANet-R:              {100 * r['invdn_over_danet_r']:.1f} %")
    click.echo(f"InvDN / DANet (R + G + D):    {100 * r['invdn_over_danet_all']:.2f} %")
    click.echo(f"\nInvDN config: {m['invdn']['config']}")

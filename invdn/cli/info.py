"""`invdn info`: every registry model's configuration, parameter count and measured FLOPs per megapixel."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info(as_json: bool) -> None:
    """Show model configurations, parameter counts, FLOPs per megapixel and ratios to DANet."""
    from invdn.eval.model_info import format_info, gather_info

    data = gather_info()
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))

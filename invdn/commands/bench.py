"""`invdn bench`: benchmarks that print a table, or JSON with --json."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks (compare side by side in one run; absolute times on a shared machine are noise)."""


@bench.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with a row per (blocks, mode).")
@click.option("--depths", default="2,4,8,16,32", help="Coupling blocks per level to try, comma-separated.")
@click.option("--batch", default=4, help="Batch size of the training step.")
@click.option("--size", default=96, help="Patch size (pixels per side).")
@click.option("--repeats", default=3, help="Timed repeats per configuration (best is kept).")
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda"]), help="Device to run on.")
def memory(as_json: bool, depths: str, batch: int, size: int, repeats: int, device: str) -> None:
    """One InvDN training step, plain autograd against memory-saving backprop, at several depths."""
    from invdn import bench_memory

    rows = bench_memory.run(tuple(int(d) for d in depths.split(",")), batch, size, repeats, device)
    if as_json:
        click.echo(bench_memory.as_json(rows))
    else:
        click.echo(bench_memory.format_table(rows))
        for k, v in bench_memory.summary(rows).items():
            click.echo(f"{k}: {v:.2f}")

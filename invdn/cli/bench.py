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
    from invdn.bench import memory as bench_memory

    rows = bench_memory.run(tuple(int(d) for d in depths.split(",")), batch, size, repeats, device)
    if as_json:
        click.echo(bench_memory.as_json(rows))
    else:
        click.echo(bench_memory.format_table(rows))
        for k, v in bench_memory.summary(rows).items():
            click.echo(f"{k}: {v:.2f}")


@bench.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (rows, training, summary) instead of a table."
)
@click.option("--quick", is_flag=True, help="Short run: 0.25 and 1 MP only, one timed repeat, no CBM3D.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch threads (default: all cores); with 1, the thread's CPU time is the clock.",
)
@click.option("--repeats", type=int, default=None, help="Timed repeats per case, best kept (default 3, --quick 1).")
@click.option(
    "--psnr-data",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Clean image folder (e.g. CBSD68) on which to measure bf16's PSNR cost at sigma 25.",
)
@click.option("--psnr-limit", type=int, default=None, help="Use only the first N images of --psnr-data.")
@click.option(
    "--compile",
    "compiled",
    is_flag=True,
    help="Also time torch.compile of each model's plain code (inductor, freezing) at 0.25 and 1 MP, with its first "
    "call (compilation) apart: the measurement behind keeping the hand-fused inference variants.",
)
def speed(
    as_json: bool,
    quick: bool,
    threads: int | None,
    repeats: int | None,
    psnr_data: str | None,
    psnr_limit: int | None,
    compiled: bool,
) -> None:
    """Inference s/MP and GFLOP/s against a reference convolution, and training pixels/s, before and after."""
    from invdn.bench import speed as bench_speed

    report = bench_speed.run(
        quick=quick,
        threads=threads,
        repeats=repeats,
        psnr_data=psnr_data,
        psnr_limit=psnr_limit,
        progress=lambda message: click.echo(f"[bench speed] {message}", err=True),
        compile_sizes=(0.25, 1.0) if compiled else (),
    )
    click.echo(bench_speed.as_json(report) if as_json else bench_speed.format_table(report))

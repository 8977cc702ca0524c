"""`invdn serve`: the REST service and web page on uvicorn."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    envvar="INVDN_WORKERS",
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (env INVDN_WORKERS); each loads both models, and torch threads are divided among them.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn log level.",
)
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run the REST API and web page (http://HOST:PORT/). Limits come from INVDN_* environment variables."""
    from invdn_service.server import serve as run_server

    click.echo(f"invdn service on http://{host}:{port}/ (API docs at /docs), {workers} process(es)")
    run_server(host=host, port=port, workers=workers, log_level=log_level)

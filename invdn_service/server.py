"""Running the service: uvicorn on the app factory, with every server process told how many share the cores."""

from __future__ import annotations

import os

APP_FACTORY = "invdn_service.app:create_app"
GRACEFUL_SHUTDOWN_S = 30  # seconds uvicorn waits for running requests on SIGTERM


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Serve the REST API and web page on uvicorn until stopped (blocking).

    Each process reads its settings from the environment (INVDN_*); INVDN_PROCESSES is set to `workers` so they
    divide the torch threads among themselves.
    """
    import uvicorn

    os.environ["INVDN_PROCESSES"] = str(workers)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )

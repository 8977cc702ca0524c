"""invdn_service.server.serve, the library call behind `invdn serve` (uvicorn itself is replaced)."""

from __future__ import annotations

import os

import pytest
import uvicorn

from invdn_service import server


def test_serve_runs_the_app_factory_and_tells_the_processes_their_number(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setenv("INVDN_PROCESSES", "1")  # restored after the test; serve sets it
    server.serve(host="0.0.0.0", port=9002, workers=3, log_level="warning")
    assert os.environ["INVDN_PROCESSES"] == "3"
    app, kwargs = calls[0]
    assert app == server.APP_FACTORY == "invdn_service.app:create_app"
    assert kwargs == {
        "factory": True,
        "host": "0.0.0.0",
        "port": 9002,
        "workers": 3,
        "log_level": "warning",
        "timeout_graceful_shutdown": 30,
    }

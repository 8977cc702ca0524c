"""The web page, the offline API docs, the OpenAPI schema and the `invdn serve` command."""

from __future__ import annotations

import os
import re
from pathlib import Path

from click.testing import CliRunner

STATIC = Path(__file__).resolve().parent.parent / "invdn_service" / "static"


def test_page_is_served_with_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in html
        assert client.get(asset).status_code == 200
    for element in (
        'id="file"',
        'id="reference"',
        'id="demo-noise"',
        'id="sigma"',
        'id="ba-slider"',
        'id="cards"',
        'id="chart"',
        'id="job-progress"',
    ):
        assert element in html
    # synthetic noise is an explicit demo mode: off unless the user ticks it
    demo = re.search(r"<input[^>]*id=\"demo-noise\"[^>]*>", html)
    assert demo and "checked" not in demo.group(0)


def test_page_loads_nothing_from_other_hosts():
    for name in ("index.html", "app.css", "app.js"):
        text = (STATIC / name).read_text()
        references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)|url\(([^)]+)\)|fetch\(\s*["'`]([^"'`]+)""", text)
        for groups in references:
            target = next(g for g in groups if g)
            assert not re.match(r"^(https?:)?//", target), f"{name} loads {target}"


def test_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    scripts = re.findall(r"""(?:src|href)=["']([^"']+)""", docs.text)
    assert scripts and all(not s.startswith("http") for s in scripts), scripts
    bundle = next(s for s in scripts if s.endswith(".js"))
    assert client.get(bundle).status_code == 200


def test_openapi_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/denoise", "post"),
        ("/v1/compare", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}", "delete"),
        ("/v1/jobs/{job_id}/result", "get"),
        ("/v1/models", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], path
    denoise = paths["/v1/denoise"]["post"]
    assert {"413", "415", "422", "503"} <= set(denoise["responses"])
    assert "X-Inference-Ms" in denoise["responses"]["200"]["headers"]
    assert "202" in paths["/v1/jobs"]["post"]["responses"]
    assert "404" in paths["/v1/jobs/{job_id}"]["get"]["responses"]


def test_serve_command_runs_uvicorn_with_the_app_factory(monkeypatch):
    import uvicorn

    from invdn.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setenv("INVDN_PROCESSES", "1")  # restored (removed) after the test; serve sets it
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 0, result.output
    app, kwargs = calls[0]
    assert app == "invdn_service.app:create_app" and kwargs["factory"] is True
    assert (kwargs["host"], kwargs["port"], kwargs["workers"]) == ("127.0.0.1", 8000, 1)
    assert "http://127.0.0.1:8000/" in result.output
    result = CliRunner().invoke(main, ["serve", "--workers", "2", "--port", "9001"])
    assert calls[1][1]["workers"] == 2 and calls[1][1]["port"] == 9001
    assert os.environ["INVDN_PROCESSES"] == "2"

"""schemathesis against the live OpenAPI schema of `invdn serve` (slow: starts the server with real models)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_schemathesis_finds_no_server_errors() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "MAX_EXAMPLES": "30", "MAX_TIME": "600"}
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "schemathesis_run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]

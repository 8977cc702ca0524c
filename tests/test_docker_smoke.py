"""The Docker image: its environment defaults agree with the service settings, and (slow) a real build and run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from invdn_service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SMOKE = ROOT / "scripts" / "docker-smoke"
# Variables read outside service.config.Settings: the weights loader and invdn.runtime.configure_threads.
NON_SETTINGS_VARS = {"INVDN_WEIGHTS_DIR", "INVDN_THREADS"}


def dockerfile_invdn_env() -> dict[str, str]:
    """The INVDN_* variables the Dockerfile's ENV instructions set, with their values."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            env.update(dict(re.findall(r"(INVDN_\w+)=(\S+)", line)))
    return env


def test_dockerfile_env_defaults_match_settings() -> None:
    env = dockerfile_invdn_env()
    assert env, "the Dockerfile sets no INVDN_* defaults"
    defaults = Settings.model_fields
    for name, value in env.items():
        if name in NON_SETTINGS_VARS:
            continue
        field = name.removeprefix("INVDN_").lower()
        assert field in defaults, f"Dockerfile sets {name}, which service.config.Settings does not read"
        assert str(defaults[field].default) == value, (
            f"Dockerfile sets {name}={value} but Settings defaults to {defaults[field].default!r}; keep them equal"
        )


def docker_usable() -> str | None:
    """None when a Docker engine is reachable or startable here, else the reason to skip."""
    if shutil.which("docker") is None:
        return "docker CLI not installed (apt-get install -y docker.io)"
    ok = subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    if not ok and shutil.which("dockerd") is None:
        return "no Docker daemon reachable and no dockerd to start"
    return None


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_docker_smoke() -> None:
    reason = docker_usable()
    if reason:
        pytest.skip(reason)
    result = subprocess.run([str(SMOKE)], cwd=ROOT, capture_output=True, text=True, timeout=3500)
    print(result.stdout)
    assert result.returncode == 0, f"docker-smoke failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "docker-smoke: OK" in result.stdout

"""Fixtures shared by several test modules: a started service client with stub models, seeded registry models, a
tiny weights file, a folder of small training images, and one torch thread for the CLI runs.

Plain helpers (no fixtures) are in helpers.py and helpers_service.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from invdn.models.danet import UNetD
from invdn.models.invdn import InvDN, InvDNConfig
from invdn.models.latent_clean import InvDNLC, InvDNLCConfig
from invdn.models.weights import save

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from helpers_service import StubDenoiser


@pytest.fixture(scope="module")
def client_and_stubs() -> Iterator[tuple[TestClient, dict[str, StubDenoiser]]]:
    """A started service (default test settings) with one stub model per registry entry, for the whole module."""
    from helpers_service import service_client  # the service's imports only where a module uses it

    with service_client() as pair:
        yield pair


@pytest.fixture
def client(client_and_stubs: tuple[TestClient, dict[str, StubDenoiser]]) -> TestClient:
    """The test client of `client_and_stubs`."""
    return client_and_stubs[0]


@pytest.fixture(scope="module")
def registry_models() -> dict[str, nn.Module]:
    """Every registry model at its default configuration, randomly initialised with torch seed 0, by name."""
    torch.manual_seed(0)
    return {"invdn": InvDNLC(), "invdn-paper": InvDN(InvDNConfig()), "danet-r": UNetD()}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random InvDN-LC (the default model) saved as a weights file, so runs take milliseconds per image."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny-invdn.safetensors"
    model = InvDNLC(InvDNLCConfig(blocks_per_level=1, hidden=8, width=16, res_blocks=1))
    with torch.no_grad():  # its cleaner starts as the identity: perturb it so outputs differ from inputs
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    save(model, path)
    return path


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """INVDN_THREADS=1 for the test: the CLIs then run torch on one thread."""
    monkeypatch.setenv("INVDN_THREADS", "1")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 40x48 colour training images with structure and a little noise, and one 36x36 grey one."""
    root = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[0:40, 0:48]
        img = np.stack([(xx * (i + 1) * 5) % 256, (yy * 7) % 256, ((xx + yy) * 3) % 256], -1)
        img = (img + rng.integers(0, 20, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (36, 36), dtype=np.uint8)).save(root / "grey.png")
    return root

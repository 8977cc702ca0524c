"""The model registry: every entry builds, loads (shipped weights or random init), denoises and reports its
parameters; names and aliases resolve; weights files name their architecture."""

from __future__ import annotations

import json

import pytest
import torch

from invdn.inference.engine import is_stochastic, model_overlap
from invdn.models import registry, weights
from invdn.models.flops import count_parameters


@pytest.mark.parametrize("spec", registry.MODELS, ids=lambda s: s.name)
def test_every_entry_loads_denoises_and_counts_parameters(spec):
    model = weights.load(spec.name)
    assert registry.spec_of(model) is spec
    assert model.model_type == spec.model_type
    parameters = count_parameters(model)
    assert parameters == count_parameters(spec.build({})) > 0
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    kwargs = {"generator": torch.Generator().manual_seed(0)} if is_stochastic(model) else {}
    with torch.no_grad():
        y = model.denoise(x, **kwargs)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert model_overlap(model) == spec.tile_overlap
    info = weights.weights_info(spec.name)
    if info["shipped"]:
        assert model.pretrained and info["parameters"] == parameters


def test_the_checkout_ships_weights_for_every_model(monkeypatch: pytest.MonkeyPatch):
    """Without INVDN_WEIGHTS_DIR, the weights folder is the checkout's and every registry model loads trained."""
    monkeypatch.delenv("INVDN_WEIGHTS_DIR", raising=False)
    assert (weights.weights_dir() / "manifest.json").is_file()
    for spec in registry.MODELS:
        assert weights.weights_info(spec.name)["shipped"], spec.name
        assert weights.load(spec.name).pretrained, spec.name


def test_names_and_aliases():
    assert registry.names()[0] == registry.DEFAULT == "invdn"
    assert registry.get("danet") is registry.get("danet-r")
    assert set(registry.names()) <= set(registry.choices())
    with pytest.raises(registry.UnknownModel, match="choose one of"):
        registry.get("nope")
    assert weights.canonical_model_type("danet") == "danet-r"


def test_default_model_fits_the_design_budget():
    """Issue 14: <= 40 % of DANet-R's parameters and <= its inference FLOPs per megapixel."""
    from invdn.models.flops import flops_per_megapixel

    lc, danet = registry.get("invdn").build({}), registry.get("danet-r").build({})
    assert count_parameters(lc) <= 0.4 * count_parameters(danet)
    assert flops_per_megapixel(lc) <= flops_per_megapixel(danet)


def test_weights_file_round_trip_and_wrong_kind(tmp_path):
    lc = registry.get("invdn").build({"width": 8, "res_blocks": 1, "hidden": 8})
    path = weights.save(lc, tmp_path / "lc.safetensors")
    again = weights.load("invdn", path=path)
    assert again.config == lc.config
    for a, b in zip(lc.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(weights.WeightsError, match="not 'danet-r'"):
        weights.load("danet-r", path=path)


def test_weights_files_store_architecture_only_and_old_files_load(tmp_path):
    """Runtime switches (`fast`, `memory_saving`) stay out of model_args; files that have them still load."""
    import json

    from invdn.models.invdn import InvDN, InvDNConfig

    model = InvDN(InvDNConfig(blocks_per_level=1, hidden=8, memory_saving=True))
    assert not set(registry.RUNTIME_SWITCHES) & set(model.model_args)
    path = weights.save(model, tmp_path / "new.safetensors")
    assert "fast" not in json.loads(weights.read_metadata(path)["model_args"])
    old = tmp_path / "old.safetensors"  # as earlier versions wrote it: the switches inside model_args
    from safetensors.torch import save_file

    meta = {"model_type": "invdn", "model_args": json.dumps({**model.model_args, "fast": True, "memory_saving": False})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old), metadata=meta)
    loaded = weights.load("invdn-paper", path=old)
    assert loaded.config.blocks_per_level == 1 and loaded.pretrained


def test_copy_shipped_takes_only_the_manifests_files(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The Docker image's weights stage: the listed files (hash-checked), manifest and card; nothing superseded."""
    monkeypatch.delenv("INVDN_WEIGHTS_DIR", raising=False)
    source = weights.weights_dir()
    entries = weights.manifest()
    written = weights.copy_shipped(tmp_path / "image")
    names = {p.name for p in written}
    assert names == {e["file"] for e in entries.values()} | {"manifest.json", "MODEL_CARD.md"}
    for entry in entries.values():
        assert weights.sha256_file(tmp_path / "image" / entry["file"]) == entry["sha256"]
    # the copy is a weights folder the loader accepts as it is
    monkeypatch.setenv("INVDN_WEIGHTS_DIR", str(tmp_path / "image"))
    assert weights.load("invdn").pretrained
    with pytest.raises(FileExistsError):
        weights.copy_shipped(tmp_path / "image")  # never overwrites
    # a listed file that fails its hash stops the copy
    fake = tmp_path / "fake"
    fake.mkdir()
    first = next(iter(entries.values()))
    (fake / "manifest.json").write_text(json.dumps({"invdn": {**first, "sha256": "0" * 64}}))
    (fake / first["file"]).write_bytes((source / first["file"]).read_bytes())
    monkeypatch.setenv("INVDN_WEIGHTS_DIR", str(fake))
    with pytest.raises(weights.WeightsError, match="sha256"):
        weights.copy_shipped(tmp_path / "other")
    assert not (tmp_path / "other").exists()  # checked before anything is written
    (fake / "manifest.json").write_text("{}")
    with pytest.raises(weights.WeightsError, match="ships no weights"):
        weights.copy_shipped(tmp_path / "other")


def test_average_is_the_element_wise_mean_of_one_models_files(tmp_path):
    torch.manual_seed(0)
    first = weights.build_model("invdn-lc", {"hidden": 8, "width": 8, "res_blocks": 1})
    torch.manual_seed(1)
    second = weights.build_model("invdn-lc", {"hidden": 8, "width": 8, "res_blocks": 1})
    a = weights.save(first, tmp_path / "a.safetensors", extra={"step": 10})
    b = weights.save(second, tmp_path / "b.safetensors", dtype=torch.float16, extra={"step": 20})
    mean = weights.load_file_model(weights.average([a, b], tmp_path / "mean.safetensors"))
    second_back = weights.load_file_model(b)  # float16 on disk: the mean uses what the file holds
    for key, value in mean.state_dict().items():
        expected = (first.state_dict()[key].float() + second_back.state_dict()[key].float()) / 2
        assert torch.allclose(value, expected, atol=1e-7), key
    differ = [
        k for k, v in mean.state_dict().items() if v.is_floating_point() and not torch.equal(v, first.state_dict()[k])
    ]
    assert differ  # the two random inits differ, so the mean is neither of them
    meta = weights.read_metadata(tmp_path / "mean.safetensors")
    assert meta["step"] == "20" and meta["averaged_from"].endswith("b.safetensors")
    other = weights.save(
        weights.build_model("invdn-lc", {"hidden": 8, "width": 16, "res_blocks": 1}), tmp_path / "c.safetensors"
    )
    with pytest.raises(weights.WeightsError, match="different models"):
        weights.average([a, other], tmp_path / "bad.safetensors")

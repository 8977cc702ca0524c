"""The library behind `invdn train`: the config from the command line, the precision choice, and the run's files
(checkpoint round trip, metrics, curves), without the click runner or a whole training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from invdn import runtime
from invdn.training.checkpoint import (
    Progress,
    append_metrics,
    load_checkpoint,
    plot_curves,
    read_metrics,
    save_checkpoint,
)
from invdn.training.config import TrainConfig, choose_precision, emulated_bf16_warning


def test_from_cli_resolves_alias_name_durations_and_the_bf16_flag() -> None:
    config = TrainConfig.from_cli(
        model="danet", data=("a", "b"), name=None, bf16=True, time_budget="1h30m", checkpoint_every="90", batch=4
    )
    assert (config.model, config.name, config.data) == ("danet-r", "danet-r", ["a", "b"])
    assert (config.time_budget, config.checkpoint_every, config.batch, config.bf16) == (5400.0, 90.0, 4, True)
    named = TrainConfig.from_cli(model="invdn", data=["a"], name="mine", precision="fp32")
    assert (named.name, named.bf16, named.time_budget, named.checkpoint_every) == ("mine", False, None, 300.0)
    with pytest.raises(ValueError, match="duration"):
        TrainConfig.from_cli(model="invdn", data=["a"], name=None, time_budget="soon")


def test_auto_precision_is_the_device_choice_but_never_with_memory_saving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "auto_precision", lambda device="cpu": "bf16")
    assert choose_precision("auto", memory_saving=False, device="cpu") == "bf16"
    assert choose_precision("auto", memory_saving=True, device="cpu") == "fp32"
    assert choose_precision("bf16", memory_saving=True, device="cpu") == "bf16"  # asked for explicitly
    assert TrainConfig.from_cli(model="invdn-paper", data=[], name=None, memory_saving=True).bf16 is False
    with pytest.raises(ValueError, match="precision"):
        choose_precision("fp16", memory_saving=False, device="cpu")


def test_emulated_bf16_warning_only_for_bf16_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "bf16_native", lambda: False)
    assert "emulates" in emulated_bf16_warning(TrainConfig(bf16=True))
    assert emulated_bf16_warning(TrainConfig(bf16=False)) is None
    assert emulated_bf16_warning(TrainConfig(bf16=True, device="cuda")) is None
    monkeypatch.setattr(runtime, "bf16_native", lambda: True)
    assert emulated_bf16_warning(TrainConfig(bf16=True)) is None


def _modules(seed: int) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(seed)
    from invdn.models.danet import DANetConfig, UNetD

    main, critic = UNetD(DANetConfig(wf=4, depth=2)), nn.Linear(3, 2)
    optimizers = {key: torch.optim.Adam(m.parameters(), lr=1e-3) for key, m in (("main", main), ("critic", critic))}
    return {"main": main, "critic": critic}, optimizers


def test_checkpoint_round_trip_restores_weights_optimizers_progress_and_rng(tmp_path: Path) -> None:
    modules, optimizers = _modules(seed=1)
    loss = modules["main"](torch.rand(1, 3, 8, 8)).sum() + modules["critic"](torch.rand(3)).sum()
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, modules, optimizers, {"iteration": 5}, Progress(7, 31.5, 12.0), {"model": "danet-r"})
    torch.rand(4)
    save_checkpoint(folder, modules, optimizers, {"iteration": 6}, Progress(8, 32.0, 13.0), {"model": "danet-r"})
    next_draw = torch.rand(4)  # what a run continuing from the second checkpoint draws first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # replaced in place, no leftovers

    fresh, fresh_optimizers = _modules(seed=2)
    torch.manual_seed(99)
    progress, task_state = load_checkpoint(folder, fresh, fresh_optimizers, torch.device("cpu"))
    assert progress == Progress(8, 32.0, 13.0) and task_state == {"iteration": 6}
    for key, module in modules.items():
        for name, tensor in module.state_dict().items():
            assert torch.equal(fresh[key].state_dict()[name], tensor), (key, name)
    assert fresh_optimizers["main"].state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.rand(4), next_draw)  # the RNG is where the second checkpoint left it


def test_metrics_lines_and_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert read_metrics(run) == [] and plot_curves(run) is None
    append_metrics(run, {"step": 1, "loss": 0.5})
    append_metrics(run, {"step": 1, "val_psnr": 25.0})
    append_metrics(run, {"step": 2, "loss": 0.25})
    assert read_metrics(run) == [{"step": 1, "loss": 0.5}, {"step": 1, "val_psnr": 25.0}, {"step": 2, "loss": 0.25}]
    out = plot_curves(run)
    assert out == run / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from invdn.training.config import TrainConfig, parse_duration
from invdn.training.losses import backward_loss, charbonnier, downscale, forward_loss, ssim_map
from invdn.training.trainer import Trainer, lr_factor


def small_config(tmp_path: Path, data: Path, **kw) -> TrainConfig:
    base = dict(
        model="invdn",
        data=[str(data)],
        noise="awgn:0-55",
        name="t",
        runs_dir=str(tmp_path),
        patch=32,
        batch=2,
        blocks_per_level=1,
        total_steps=100,
        log_every=1,
        checkpoint_every=1e9,
        seed=3,
        patches_per_image=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def main_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "main.safetensors"))


@pytest.mark.parametrize("model", ["invdn", "invdn-paper", "danet"])
def test_resume_is_bit_exact(tmp_path, image_folder, model):
    torch.set_num_threads(1)
    straight = Trainer(small_config(tmp_path / "a", image_folder, model=model, max_steps=3), progress=False)
    straight.train()
    first = Trainer(small_config(tmp_path / "b", image_folder, model=model, max_steps=2), progress=False)
    first.train()
    resumed = Trainer(small_config(tmp_path / "b", image_folder, model=model, max_steps=3), resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    a, b = main_weights(tmp_path / "a" / "t"), main_weights(tmp_path / "b" / "t")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = Trainer(small_config(tmp_path / "c", image_folder, model=model, max_steps=0), progress=False)
    assert any(not torch.equal(start.task.modules["main"].state_dict()[k].cpu(), a[k]) for k in a)


def test_training_lowers_the_loss_and_writes_metrics_and_plot(tmp_path, image_folder):
    torch.set_num_threads(1)  # two threads spin against any other busy process on a 2-core machine
    cfg = small_config(
        tmp_path,
        image_folder,
        noise="awgn:25",
        max_steps=30,
        lr=1e-3,
        val_dir=str(image_folder),
        val_every=15,
        val_limit=2,
    )
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert [r for r in rows if "val_psnr" in r]
    assert (tmp_path / "t" / "curves.png").stat().st_size > 0
    assert (tmp_path / "t" / "best" / "main.safetensors").exists()
    # the checkpoint's main file is a usable weights file that rebuilds its own model
    from invdn.models.weights import load_file_model

    model = load_file_model(tmp_path / "t" / "checkpoint" / "main.safetensors")
    assert model.pretrained and model.config.blocks_per_level == 1


def test_time_budget_stops_at_a_checkpoint(tmp_path, image_folder):
    cfg = small_config(tmp_path, image_folder, time_budget=0.0, max_steps=50)
    result = Trainer(cfg, progress=False).train()
    assert result["step"] == 1
    assert (tmp_path / "t" / "checkpoint" / "state.pt").exists()
    state = torch.load(tmp_path / "t" / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 1


def test_ddp_two_gloo_processes(tmp_path, image_folder):
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys, torch\n"
        "from invdn.training.config import TrainConfig\n"
        "from invdn.training.trainer import Trainer\n"
        "torch.set_num_threads(1)\n"
        f"cfg = TrainConfig(model='invdn', data=[{str(image_folder)!r}], noise='awgn:25', name='ddp',\n"
        f"    runs_dir={str(tmp_path)!r}, patch=32, batch=2, blocks_per_level=1, max_steps=2, log_every=1,\n"
        "    checkpoint_every=1e9)\n"
        "t = Trainer(cfg, progress=False)\n"
        "t.train()\n"
        "w = torch.cat([p.detach().flatten() for p in t.task.modules['main'].parameters()])\n"
        f"torch.save(w, {str(tmp_path)!r} + f'/w{{t.rank}}.pt')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        str(script),
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=240)
    w0, w1 = torch.load(tmp_path / "w0.pt"), torch.load(tmp_path / "w1.pt")
    assert torch.equal(w0, w1)  # gradients were averaged: both ranks hold the same weights
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2


def test_losses_behave():
    torch.manual_seed(0)
    clean = torch.rand(2, 3, 16, 16)
    assert forward_loss(downscale(clean, 4), clean) == 0
    assert charbonnier(clean, clean) == pytest.approx(np.sqrt(1e-3) * 3 * 16 * 16, rel=1e-5)
    torch.testing.assert_close(ssim_map(clean, clean), torch.ones_like(clean))
    noisy = clean + 0.1 * torch.randn_like(clean)
    assert backward_loss(noisy, clean) > backward_loss(clean, clean)


def test_durations_and_schedules():
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400 and parse_duration("45") == 45
    with pytest.raises(ValueError):
        parse_duration("two hours")
    assert lr_factor("cosine", 0, 100) == pytest.approx(1.0) and lr_factor("cosine", 100, 100) == pytest.approx(0.01)
    assert lr_factor("step", 80, 100) == 0.25


def test_invdn_losses_stay_float32_under_bf16_autocast():
    # SSIM's variances (E[x^2] - E[x]^2) cancel badly in bf16: the task must compute its losses in float32.
    from invdn.training.invdn_task import float32_losses

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 32, 32, generator=g) * 0.1 + 0.5  # smooth, bright: where bf16 SSIM breaks down
    recon = clean + 0.01 * torch.randn(clean.shape, generator=g)
    lr = downscale(clean, 4) + 0.01 * torch.randn(2, 3, 8, 8, generator=g)
    reference = forward_loss(lr, clean) + backward_loss(recon, clean)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        careless = backward_loss(recon, clean) + forward_loss(lr, clean)
        careful = sum(float32_losses(lr, recon, clean))
    assert careful.dtype == torch.float32
    assert torch.allclose(careful, reference, rtol=1e-6)
    assert not torch.allclose(careless.float(), reference, rtol=1e-3)  # the hazard the function avoids is real


def test_backward_loss_weights_reach_the_invdn_task(tmp_path, image_folder):
    from invdn.training.invdn_task import float32_losses
    from invdn.training.losses import sobel_l1

    g = torch.Generator().manual_seed(1)
    clean = torch.rand(2, 3, 32, 32, generator=g)
    recon = clean + 0.05 * torch.randn(clean.shape, generator=g)
    lr = downscale(clean, 4)
    _, without_ssim = float32_losses(lr, recon, clean, sobel_weight=0.5, ssim_weight=0.0)
    torch.testing.assert_close(without_ssim, charbonnier(recon, clean) + 0.5 * sobel_l1(recon, clean))

    cfg = small_config(tmp_path, image_folder, model="invdn-paper", ssim_weight=0.0, sobel_weight=0.5)
    trainer = Trainer(cfg, progress=False)
    assert (trainer.task.sobel_weight, trainer.task.ssim_weight) == (0.5, 0.0)
    default = Trainer(small_config(tmp_path / "d", image_folder, model="invdn-paper"), progress=False)
    assert (default.task.sobel_weight, default.task.ssim_weight) == (0.1, 1.0)  # issue 4's loss


def test_a_run_shorter_than_its_log_interval_still_logs_its_last_step(tmp_path, image_folder):
    cfg = small_config(tmp_path, image_folder, max_steps=3, log_every=100)
    Trainer(cfg, progress=False).train()
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [3]


def test_train_command_precision_auto(tmp_path, image_folder, monkeypatch):
    from click.testing import CliRunner

    from invdn.cli import main
    from invdn.runtime import auto_precision

    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(image_folder), "--patch", "32", "--batch", "2", "--max-steps", "1", "--name", "p"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "runs" / "p" / "config.json").read_text())
    assert config["bf16"] == (auto_precision("cpu") == "bf16")
    assert config["model"] == "invdn"


@pytest.mark.parametrize("model", ["invdn", "invdn-paper", "danet"])
def test_channels_last_trains_the_same_model(tmp_path, image_folder, model):
    """The memory format is a speed switch only: the same steps give the same losses up to float rounding."""
    torch.set_num_threads(1)
    losses = {}
    for fmt in (True, False):
        cfg = small_config(tmp_path / str(fmt), image_folder, model=model, max_steps=3, channels_last=fmt)
        trainer = Trainer(cfg, progress=False)
        convs = [p for p in trainer.task.modules["main"].parameters() if p.dim() == 4 and p.shape[2] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == fmt for p in convs)
        trainer.train()
        rows = [json.loads(line) for line in (tmp_path / str(fmt) / "t" / "metrics.jsonl").read_text().splitlines()]
        losses[fmt] = [r["loss"] for r in rows if "loss" in r]
    assert len(losses[True]) == 3 and len(set(losses[True])) == 3  # three different batches
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)


def test_train_command_scales(tmp_path, image_folder, monkeypatch):
    from click.testing import CliRunner

    from invdn.cli import main

    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", str(image_folder), "--patch", "32", "--batch", "2", "--max-steps", "1"]
    result = CliRunner().invoke(main, [*base, "--name", "s", "--scales", "1,0.8"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "s" / "config.json").read_text())["scales"] == [1.0, 0.8]
    for bad in ("0", "1.5", "1,x"):
        result = CliRunner().invoke(main, [*base, "--name", "b", "--scales", bad])
        assert result.exit_code == 2 and "--scales" in result.output, bad


def test_init_from_builds_the_files_architecture_and_resume_keeps_it(tmp_path, image_folder):
    from invdn.models.latent_clean import InvDNLC, InvDNLCConfig, deepen
    from invdn.models.weights import read_model_args, save

    torch.set_num_threads(1)
    start = save(deepen(InvDNLC(InvDNLCConfig(hidden=8, width=8, res_blocks=1)), 2), tmp_path / "deep.safetensors")
    cfg = small_config(tmp_path, image_folder, init_from=str(start), max_steps=1)
    first = Trainer(cfg, progress=False)
    model = first.task.modules["main"]
    assert (model.config.width, model.config.res_blocks) == (8, 2)
    loaded = load_file(str(start))
    assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())
    first.train()
    run = tmp_path / "t"
    assert read_model_args(run / "checkpoint" / "main.safetensors")["res_blocks"] == 2
    assert json.loads((run / "config.json").read_text())["model_args"]["res_blocks"] == 2
    resumed = Trainer(small_config(tmp_path, image_folder, max_steps=2), resume=True, progress=False)
    assert resumed.step == 1 and resumed.task.modules["main"].config.res_blocks == 2
    resumed.train()
    assert resumed.step == 2

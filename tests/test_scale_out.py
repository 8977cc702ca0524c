"""Beyond one machine: `invdn denoise --shard K/N`, `--merge-reports`, and the Ray path (`--ray`, denoise_on_ray).

The Ray tests start a local Ray instance (`ray.init(num_cpus=2)`) and are skipped where Ray is not installed
(`pip install -e .[ray]`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_denoise_cli import BROKEN, _checksums, _output_for, _photo, make_mixed_folder

from invdn.batch.shard import parse_shard, shard_of, take_shard
from invdn.cli.denoise import denoise

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: INVDN_THREADS=1


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(denoise, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def _report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_input(lines: list[dict], root: Path) -> dict[str, dict]:
    return {Path(line["input"]).relative_to(root).as_posix(): line for line in lines}


def test_shard_parsing_and_stability() -> None:
    assert parse_shard("2/5") == (2, 5) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "1/0", "x", "1-3", "-1/3"):
        with pytest.raises(ValueError, match="K/N"):
            parse_shard(bad)

    class Item:
        def __init__(self, key: str) -> None:
            self.key = key

    keys = [f"folder{index % 7}/photo{index:04d}.jpg" for index in range(2000)]
    items = [Item(key) for key in keys]
    shards = [take_shard(items, (k, 4)) for k in range(1, 5)]
    assert sorted(item.key for shard in shards for item in shard) == sorted(keys)  # each key exactly once
    assert all(350 < len(shard) < 650 for shard in shards)  # a hash spreads them (500 each on average)
    # listing order does not matter: the same keys in reverse land in the same shards
    assert [item.key for item in take_shard(items[::-1], (3, 4))] == [item.key for item in shards[2]][::-1]
    assert all(shard_of(key, 1) == 1 for key in keys[:50])


def test_shards_cover_every_file_once_survive_a_rerun_and_merge(tmp_path: Path, tiny_weights: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    expect = make_mixed_folder(source)
    before = _checksums(source)
    reports = [tmp_path / f"shard{k}.jsonl" for k in (1, 2, 3)]
    codes = []
    for k, report in enumerate(reports, start=1):
        args = [str(source), "-o", str(out), "--weights", str(tiny_weights), "--shard", f"{k}/3"]
        args += ["--report", str(report)]
        code, err = _run(args)
        codes.append(code)
        assert "done" in err
    inputs = [set(_by_input(_report(report), source)) for report in reports]
    assert all(inputs) and sum(len(part) for part in inputs) == 30  # each of the 30 files in exactly one shard
    assert set().union(*inputs) == set(expect)
    broken_shards = {k for k, part in enumerate(inputs, start=1) if part & BROKEN}
    assert codes == [1 if k in broken_shards else 0 for k in (1, 2, 3)]
    produced = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(_output_for(rel) for rel in expect if rel not in BROKEN)
    assert _checksums(source) == before

    # the same machines mounting the folder elsewhere (another path) take the same files
    elsewhere = tmp_path / "mount" / "photos"
    shutil.copytree(source, elsewhere)
    dry = CliRunner().invoke(denoise, [str(elsewhere), "-o", str(tmp_path / "o2"), "--shard", "2/3", "--dry-run"])
    listing = dry.stdout
    planned = {line.split(" -> ")[0].split(" ", 2)[2] for line in listing.splitlines() if " -> " in line}
    assert {Path(name).relative_to(elsewhere).as_posix() for name in planned} == inputs[1]

    # a rerun of shard 2 skips its files and rewrites nothing
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, err = _run(
        [str(source), "-o", str(out), "--weights", str(tiny_weights), "--shard", "2/3", "--report", str(reports[1])]
    )
    rerun = _report(reports[1])[len(inputs[1]) :]
    assert {line["status"] for line in rerun} <= {"skipped", "failed"}
    assert {rel for rel, line in _by_input(rerun, source).items() if line["status"] == "failed"} == inputs[1] & BROKEN
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes

    merged = tmp_path / "all.jsonl"
    code, err = _run(["--merge-reports", *map(str, reports), "--report", str(merged)])
    assert code == 1, err  # the two broken files are still failures
    lines = _report(merged)
    status = _by_input(lines, source)
    assert len(lines) == 30 and set(status) == set(expect)
    assert {rel for rel, line in status.items() if line["status"] == "failed"} == BROKEN
    assert {rel for rel, line in status.items() if line["status"] == "skipped"} == inputs[1] - BROKEN  # the rerun
    assert (
        f"{len(lines)} file(s), done {28 - len(inputs[1] - BROKEN)}, skipped {len(inputs[1] - BROKEN)}, failed 2" in err
    )

    # never overwrites: an existing merged report is kept unless --overwrite
    code, err = _run(["--merge-reports", *map(str, reports), "--report", str(merged)])
    assert code == 2 and "exists" in err and _report(merged) == lines
    # a shard's report given twice: the files it denoised are flagged as denoised twice
    copy = tmp_path / "copy.jsonl"
    shutil.copy(reports[0], copy)
    code, err = _run(["--merge-reports", str(reports[0]), str(copy), "--report", str(tmp_path / "dup.jsonl")])
    assert err.count("more than one of these runs") == len(inputs[0] - BROKEN)


def test_shard_and_merge_usage_errors(tmp_path: Path) -> None:
    photo = tmp_path / "a.png"
    Image.fromarray(_photo(np.random.default_rng(0), 20, 20)).save(photo)
    for bad in ("0/2", "3/2", "half"):
        code, err = _run([str(photo), "-o", str(tmp_path / "o"), "--shard", bad])
        assert code == 2 and "--shard" in err
    assert _run([str(photo), "-o", "-", "--shard", "1/2"])[0] == 2
    (tmp_path / "bad.jsonl").write_text('{"input": "x", "status": "done"}\nnot json\n')
    code, err = _run(["--merge-reports", str(tmp_path / "bad.jsonl"), "--report", str(tmp_path / "m.jsonl")])
    assert code == 2 and "bad.jsonl:2" in err and not (tmp_path / "m.jsonl").exists()
    code, err = _run(["--merge-reports", str(tmp_path / "bad.jsonl")])
    assert code == 2 and "--report" in err
    code, err = _run([str(photo), "-o", "s3://bucket/out"])
    assert code == 2 and "--ray" in err
    code, err = _run(["--ray", str(photo), "-o", str(tmp_path / "o")])  # the input read as --ray's address
    assert code == 2 and "--ray=ADDRESS" in err


def test_import_and_local_run_do_not_import_ray(tmp_path: Path, tiny_weights: Path) -> None:
    Image.fromarray(_photo(np.random.default_rng(1), 24, 24)).save(tmp_path / "a.png")
    script = (
        "import sys\n"
        "import invdn\n"
        "from click.testing import CliRunner\n"
        "from invdn.cli.denoise import denoise\n"
        f"result = CliRunner().invoke(denoise, [{str(tmp_path / 'a.png')!r}, '-o', {str(tmp_path / 'o')!r}, "
        f"'--weights', {str(tiny_weights)!r}, '--shard', '1/1'])\n"
        "assert result.exit_code == 0, result.output\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('ray', 'pyarrow'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, env={**os.environ, "INVDN_THREADS": "1"})
    assert (tmp_path / "o" / "a.png").exists()


@pytest.fixture(scope="module")
def ray_instance() -> object:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    os.environ["INVDN_THREADS"] = "1"  # the actors' torch threads, as in the local runs they are compared with
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_writes_the_local_cli_bytes_and_reports_failures(
    tmp_path: Path, tiny_weights: Path, ray_instance: object
) -> None:
    from invdn.batch.ray import ActorSettings, ModelSettings, denoise_on_ray

    source = tmp_path / "in"
    expect = make_mixed_folder(source)
    good = sorted(_output_for(rel) for rel in expect if rel not in BROKEN)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    base = ["--weights", str(tiny_weights), "--seed", "5"]
    code, err = _run([str(source), "-o", str(local), *base, "--report", str(tmp_path / "local.jsonl")])
    assert code == 1, err
    mine = on_ray / "camera" / "raw0.jpg"  # a file of the user's where an output would go: kept
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    code, err = _run([str(source), "-o", str(on_ray), *base, "--report", str(tmp_path / "ray.jsonl"), "--ray"])
    assert code == 1, err
    assert "done 27, skipped 1, failed 2" in err
    assert mine.read_bytes() == b"mine"
    for rel in good:
        if rel != "camera/raw0.jpg":
            assert (on_ray / rel).read_bytes() == (local / rel).read_bytes(), rel
    assert sorted(str(p.relative_to(on_ray)) for p in on_ray.rglob("*") if p.is_file()) == good
    local_lines = _by_input(_report(tmp_path / "local.jsonl"), source)
    ray_lines = _by_input(_report(tmp_path / "ray.jsonl"), source)
    assert set(ray_lines) == set(expect)
    for rel in BROKEN:
        assert ray_lines[rel]["status"] == "failed" and ray_lines[rel]["reason"] == local_lines[rel]["reason"]
        assert str(source / rel) in err
    for rel in set(expect) - BROKEN:
        assert ray_lines[rel]["status"] == ("skipped" if rel == "camera/raw0.jpg" else "done"), rel
        assert ray_lines[rel]["output"] == str(on_ray / _output_for(rel))

    # the Python function, with file:// URIs in and out, in two shards: the same bytes again
    uri_out = tmp_path / "uri"
    counts = [
        denoise_on_ray(
            [source.as_uri()],
            uri_out.as_uri(),
            settings=ModelSettings(weights=tiny_weights),
            actors=ActorSettings(actors=2),
            seed=5,
            shard=(k, 2),
            report=tmp_path / "uri.jsonl",
        )
        for k in (1, 2)
    ]
    assert sum(c["done"] for c in counts) == 28 and sum(c["failed"] for c in counts) == 2
    assert sorted(str(p.relative_to(uri_out)) for p in uri_out.rglob("*") if p.is_file()) == good
    assert all((uri_out / rel).read_bytes() == (local / rel).read_bytes() for rel in good)
    again = denoise_on_ray([source.as_uri()], uri_out.as_uri(), settings=ModelSettings(weights=tiny_weights), seed=5)
    assert again == {"done": 0, "skipped": 28, "failed": 2}


def test_compose_replicas_sit_behind_a_proxy_that_routes_on_readiness() -> None:
    """compose.yaml's replicas are exactly the proxy's servers, and every backend probes /health/ready."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    replicas = sorted(name for name, service in services.items() if service.get("image") == "invdn")
    assert len(replicas) == 2
    assert services["proxy"]["volumes"][0].startswith("./deploy/haproxy.cfg:")
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    backends = config.split("\nbackend ")[1:]
    assert len(backends) == 2
    for block in backends:
        assert "option httpchk GET /health/ready" in block and "http-check expect status 200" in block
        servers = sorted(line.split()[1] for line in block.splitlines() if line.strip().startswith("server "))
        assert servers == replicas
    if shutil.which("haproxy"):
        checked = subprocess.run(["haproxy", "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")], capture_output=True)
        assert checked.returncode == 0, checked.stderr

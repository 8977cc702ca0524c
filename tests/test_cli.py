import json
import subprocess
import sys

from click.testing import CliRunner

from invdn.cli import COMMANDS, main


def test_help_lists_every_command_without_importing_torch():
    code = (
        "import sys; from invdn.cli import main; main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
    assert out.strip().endswith("False")


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "invdn", "--help"], capture_output=True, text=True, check=True)
    assert "Usage: invdn" in out.stdout


def test_info_json_reports_exact_counts_and_both_ratios():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    models = data["models"]
    assert models["invdn-paper"]["parameters"] == 2_640_960
    assert models["danet-r"]["parameters"] == 9_153_571
    assert models["danet-g"]["parameters"] == 9_153_859
    assert models["danet-discriminator"]["parameters"] == 44_703_745
    assert models["danet-total"]["parameters"] == 63_011_175
    assert round(100 * data["ratios"]["invdn-paper"]["over_danet_r"], 1) == 28.9
    assert round(100 * data["ratios"]["invdn-paper"]["over_danet_all"], 2) == 4.19
    # the default model's budget (design issue): <= 40 % of DANet-R's parameters, <= its FLOPs per megapixel
    assert models["invdn"]["parameters"] <= 0.4 * models["danet-r"]["parameters"]
    assert 0 < models["invdn"]["flops_per_megapixel"] <= models["danet-r"]["flops_per_megapixel"]
    # measured FLOPs: the paper InvDN's encode+decode is several times DANet-R's forward
    assert models["invdn-paper"]["flops_per_megapixel"] > 2 * models["danet-r"]["flops_per_megapixel"] > 0
    table = CliRunner().invoke(main, ["info"])
    assert "28.9%" in table.output and "4.19%" in table.output


def test_bench_memory_rows(tmp_path):
    result = CliRunner().invoke(
        main, ["bench", "memory", "--json", "--depths", "1,2", "--batch", "1", "--size", "16", "--repeats", "1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {(r["blocks_per_level"], r["mode"]): r for r in data["rows"]}
    assert set(rows) == {(1, "plain"), (1, "memory-saving"), (2, "plain"), (2, "memory-saving")}
    assert rows[(2, "memory-saving")]["saved_bytes"] == rows[(1, "memory-saving")]["saved_bytes"]
    assert rows[(2, "plain")]["saved_bytes"] > rows[(1, "plain")]["saved_bytes"]
    assert all(r["peak_rss_bytes"] > 0 for r in rows.values())

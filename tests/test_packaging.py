"""The install split: `invdn.load` runs on the core dependencies alone, and a command whose extra is missing says
which one to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Modules of the optional extras (and of the CLI) that loading a model must not import.
NOT_FOR_LOAD = ("fastapi", "uvicorn", "starlette", "pydantic", "bm3d", "matplotlib", "skimage", "scipy", "click")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_load_and_denoise_need_only_the_core():
    """With every optional module made unimportable, `invdn.load` still loads and denoises."""
    result = _run(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_FOR_LOAD!r}:
                    raise ModuleNotFoundError(f"blocked: {{name}}", name=name)
        sys.meta_path.insert(0, Block())
        import torch, invdn
        for name in ("invdn", "invdn-paper", "danet-r"):
            model = invdn.load(name)
            out = model.denoise(torch.rand(1, 3, 32, 32))
            assert out.shape == (1, 3, 32, 32)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_command_without_its_extra_names_the_extra():
    result = _run(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "fastapi":
                    raise ModuleNotFoundError("blocked", name=name)
        sys.meta_path.insert(0, Block())
        from click.testing import CliRunner
        from invdn.cli import main
        result = CliRunner().invoke(main, ["serve", "--port", "1"])
        print(result.exit_code, result.output)
        """
    )
    assert result.returncode == 0, result.stderr
    code, _, output = result.stdout.partition(" ")
    assert code == "1"
    assert "pip install 'invdn[serve]'" in output and "fastapi" in output

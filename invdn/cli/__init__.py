"""The `invdn` command line: a click group whose subcommands load lazily.

Each subcommand lives in its own module and is listed here by name, so `invdn --help` starts without
importing torch, and no module is discovered by scanning files.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# name -> "module:attribute" of a click.Command; imported only when that command runs or shows help.
COMMANDS: dict[str, str] = {
    "info": "invdn.cli.info:info",
    "bench": "invdn.cli.bench:bench",
    "compare": "invdn.cli.compare:compare",
    "train": "invdn.cli.train:train",
    "eval": "invdn.cli.evaluate:evaluate",
    "denoise": "invdn.cli.denoise:denoise",
    "serve": "invdn.cli.serve:serve",
}

# The optional extra (pyproject.toml) each command needs beyond the core install, and modules that show it is there.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": ("serve", ("fastapi", "uvicorn", "pydantic_settings", "skimage")),
    "train": ("train", ("matplotlib",)),
    "eval": ("eval", ("skimage", "bm3d", "matplotlib")),
    "compare": ("eval", ("skimage",)),
    "bench": ("eval", ("skimage", "bm3d")),
}

SHORT_HELP: dict[str, str] = {
    "info": "Model configurations, parameter counts and FLOPs.",
    "bench": "Benchmarks (memory, speed).",
    "compare": "InvDN against DANet-R on one image.",
    "train": "Train InvDN or DANet.",
    "eval": "PSNR/SSIM tables on datasets.",
    "denoise": "Denoise files and folders.",
    "serve": "Run the REST service and web page.",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        missing = _missing_module(cmd_name)
        if missing is not None:
            return _needs_extra(cmd_name, missing)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not installed in this build
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _missing_module(name: str) -> str | None:
    """The first module of the command's extra that is not installed, else None."""
    for module in EXTRAS.get(name, ("", ()))[1]:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def _needs_extra(name: str, missing: str) -> click.Command:
    """A stand-in command that says which extra to install (`invdn[serve]` etc.) and exits with status 1."""
    extra = EXTRAS[name][0]

    def fail(**_: object) -> None:
        raise click.ClickException(
            f"`invdn {name}` needs the package {missing!r}, from the {extra!r} extra: pip install 'invdn[{extra}]'"
        )

    return click.Command(
        name,
        callback=fail,
        help=SHORT_HELP.get(name),
        context_settings={"ignore_unknown_options": True},
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="invdn")
def main() -> None:
    """invdn: image denoising with an invertible network (InvDN), compared against DANet."""


if __name__ == "__main__":
    main()

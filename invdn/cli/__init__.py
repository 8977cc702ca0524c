"""The `invdn` command line: a click group whose subcommands load lazily.

Each subcommand lives in its own module and is listed here by name, so `invdn --help` starts without
importing torch, and no module is discovered by scanning files.
"""

from __future__ import annotations

import importlib

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
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None  # command not installed in this build
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="invdn")
def main() -> None:
    """invdn: image denoising with an invertible network (InvDN), compared against DANet."""


if __name__ == "__main__":
    main()

"""What an evaluation is asked to do: `EvalConfig`, and the readers that build it from command-line text."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvalConfig:
    """What to evaluate."""

    datasets: list[Path] = field(default_factory=list)  # clean image folders, evaluated with synthetic noise
    pairs: list[Path] = field(default_factory=list)  # real-noise folders with noisy/ and clean/
    sigmas: list[float] = field(default_factory=lambda: [15.0, 25.0, 50.0])  # AWGN sigmas (0-255)
    noises: list[str] = field(default_factory=list)  # extra synthetic noise specs (e.g. "camera")
    limit: int | None = None  # evaluate only the first N images of each folder
    clip8: bool = False  # save noisy inputs as 8-bit (clip + round) before denoising, as users' files arrive
    bm3d: bool = True  # include (C)BM3D rows
    bm3d_sweep: list[float] = field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0])  # real pairs
    grey: str = "auto"  # "auto" (grey if the first image is grey), "on" or "off"
    seed: int = 0  # seed of InvDN's latent draws (per image: seed, dataset, condition, image)

    @classmethod
    def from_cli(
        cls,
        datasets: Sequence[Path],
        pairs: Sequence[Path],
        sigma_text: str,
        noises: Sequence[str],
        sweep_text: str,
        limit: int | None = None,
        clip8: bool = False,
        bm3d: bool = True,
        grey: str = "auto",
        seed: int = 0,
    ) -> EvalConfig:
        """The config of `invdn eval`'s options: sigmas and the sweep as text (`parse_sigmas`, `parse_sweep`),
        noise specs checked (`check_noise_specs`). OptionError names the option at fault."""
        with _option("--noise"):
            check_noise_specs(noises)
        with _option("--sigma"):
            sigmas = parse_sigmas(sigma_text)
        with _option("--bm3d-sweep"):
            sweep = parse_sweep(sweep_text)
        return cls(list(datasets), list(pairs), sigmas, list(noises), limit, clip8, bm3d, sweep, grey, seed)


class OptionError(ValueError):
    """A command-line value that cannot be used; `option` names its option, e.g. "--sigma"."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@contextmanager
def _option(option: str) -> Iterator[None]:
    """Re-raises a ValueError as an OptionError of `option`."""
    try:
        yield
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(option, str(exc)) from None


def parse_sigmas(text: str) -> list[float]:
    """'15,25,50' -> [15.0, 25.0, 50.0]; ValueError for anything but non-negative numbers."""
    try:
        sigmas = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{text!r}: expected numbers like 15,25,50") from None
    if any(s < 0 for s in sigmas):
        raise ValueError("sigmas must be >= 0")
    return sigmas


def parse_sweep(text: str) -> list[float]:
    """'5:30:2.5' -> [5, 7.5, ..., 30]; '10,20' -> [10, 20]; ValueError otherwise."""
    try:
        if ":" in text:
            lo, hi, step = (float(p) for p in text.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError
            n = int(round((hi - lo) / step))
            return [round(lo + k * step, 6) for k in range(n + 1)]
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"{text!r}: use LO:HI:STEP or a list") from None


def check_noise_specs(specs: Sequence[str]) -> None:
    """ValueError unless every spec is a valid colour noise spec (`invdn.training.noise.make_noise`).

    A grey spec would score a grey noisy image against a colour reference, so it is refused."""
    from invdn.training.noise import make_noise

    for spec in specs:
        make_noise(spec)
        if re.search(r"(^|:)gr[ae]y(:|$|=)", spec):
            raise ValueError(
                f"{spec!r}: a grey noise spec would score a grey noisy image against a colour reference; "
                "evaluate a grey dataset with --grey and a colour noise spec instead"
            )

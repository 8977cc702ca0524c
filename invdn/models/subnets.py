"""Subnetworks used inside coupling blocks, built through `subnet_constructor(c_in, c_out)`.

They need not be invertible. Their last convolution starts at zero, so every coupling block starts as the
identity and a fresh InvDN is exactly the Haar transform (as in the official InvDN/IRN initialisation).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

SubnetConstructor = Callable[[int, int], nn.Module]


def _init_xavier(convs: list[nn.Conv2d], scale: float) -> None:
    for conv in convs:
        nn.init.xavier_normal_(conv.weight)
        conv.weight.data.mul_(scale)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)


class ResNetSubnet(nn.Module):
    """InvDN's "resnet" subnet: conv3x3 -> LReLU -> conv3x3 -> LReLU, then conv3x3 over [input, hidden]."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(c_in + hidden, c_out, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        _init_xavier([self.conv1, self.conv2], 0.1)
        nn.init.zeros_(self.conv3.weight)
        nn.init.zeros_(self.conv3.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv1(x))  # (B, hidden, h, w)
        h = self.act(self.conv2(h))
        return self.conv3(torch.cat([x, h], dim=1))  # (B, c_out, h, w)


class DenseSubnet(nn.Module):
    """A 5-convolution dense block (as in IRN's DenseBlock): each conv sees the input and all earlier outputs."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in + i * hidden, hidden, 3, padding=1) for i in range(4))
        self.last = nn.Conv2d(c_in + 4 * hidden, c_out, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        _init_xavier(list(self.convs), 0.1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for conv in self.convs:
            features.append(self.act(conv(torch.cat(features, dim=1))))
        return self.last(torch.cat(features, dim=1))


def subnet_constructor(kind: str, hidden: int) -> SubnetConstructor:
    """Return `constructor(c_in, c_out)` for a subnet kind: "resnet" or "dense"."""
    kinds: dict[str, type[nn.Module]] = {"resnet": ResNetSubnet, "dense": DenseSubnet}
    if kind not in kinds:
        raise ValueError(f"unknown subnet {kind!r}; choose one of {sorted(kinds)}")
    return partial(kinds[kind], hidden=hidden)

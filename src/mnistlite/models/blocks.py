"""Small building blocks the zoo's factories are written in: one block with a configurable
order of BatchNorm, ReLU and Dropout keeps each factory checkable against its published table."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

_ORDER_LETTERS = {"c": "conv", "b": "bn", "r": "relu", "d": "dropout"}


def resolve_dropout(override: float | None, default: float) -> float:
    """The rate a factory should use: the trainer's override, else the model's own."""
    if override is None:
        return default
    p = float(override)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {override}")
    return p


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    order: str = "cbr",
    padding: int = 0,
    bias: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """A Conv2d with BatchNorm2d / ReLU / Dropout in the order `order` spells: c = Conv2d,
    b = BatchNorm2d, r = ReLU, d = Dropout(`dropout`); e.g. "cbr", "crbd", "c".

    `bias` defaults to False: BatchNorm's mean subtraction cancels it.
    """
    if not order or order[0] != "c" or order.count("c") != 1:
        raise ValueError(f"order must start with a single 'c', got {order!r}")
    unknown = set(order) - set(_ORDER_LETTERS)
    if unknown or len(set(order)) != len(order):
        raise ValueError(f"order letters are c, b, r, d, each at most once; got {order!r}")
    layers: list[tuple[str, nn.Module]] = []
    for letter in order:
        if letter == "c":
            layer: nn.Module = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        elif letter == "b":
            layer = nn.BatchNorm2d(out_channels)
        elif letter == "r":
            layer = nn.ReLU()
        else:
            layer = nn.Dropout(dropout)
        layers.append((_ORDER_LETTERS[letter], layer))
    return nn.Sequential(OrderedDict(layers))


def named_sequential(**layers: nn.Module) -> nn.Sequential:
    """nn.Sequential whose children carry the source's layer names (conv1, pool1, ...)."""
    return nn.Sequential(OrderedDict(layers))

"""airbench's whitening first layer: the input convolution's filters start as the principal directions of the
training images' patches, scaled to unit variance, in +/- pairs (a ReLU follows and would keep only one sign):
C channels take the top C/2 directions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 5e-4  # airbench's
PATCH_IMAGES = 10_000  # enough for a k*k covariance; the first images, unaugmented


def whitening_filters(images: torch.Tensor, channels: int, kernel: tuple[int, int]) -> torch.Tensor:
    """(channels, C_in, kh, kw) filters: +/- the leading principal directions of the patches, whitened."""
    patches = F.unfold(images[:PATCH_IMAGES].float(), kernel)  # (N, C_in*kh*kw, L)
    flat = patches.transpose(1, 2).reshape(-1, patches.shape[1]).double()
    cov = flat.T @ flat / flat.shape[0]  # uncentred, as airbench: BatchNorm removes the mean next
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    order = eigvals.argsort(descending=True)
    scaled = (eigvecs[:, order] / torch.sqrt(eigvals[order].clamp_min(0) + EPS)).T  # rows: directions
    half = (channels + 1) // 2
    if half > scaled.shape[0]:
        raise ValueError(f"whiten: {channels} channels need {half} directions, patches have {scaled.shape[0]}")
    pairs = torch.stack((scaled[:half], -scaled[:half]), dim=1).reshape(2 * half, -1)[:channels]
    return pairs.reshape(channels, images.shape[1], *kernel).float()


@torch.no_grad()
def whiten_input_conv(model: nn.Module, images: torch.Tensor, frozen: bool) -> str:
    """Set the model's input convolution (its first in module order) to whitening filters; returns the log line."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("whiten: the model has no Conv2d")
    if conv.groups != 1:
        raise ValueError("whiten: the input convolution is grouped")
    kernel = (int(conv.kernel_size[0]), int(conv.kernel_size[1]))
    conv.weight.copy_(whitening_filters(images.to(conv.weight.device), conv.out_channels, kernel))
    if conv.bias is not None:
        conv.bias.zero_()
    if frozen:
        conv.weight.requires_grad_(False)
    return (
        f"whiten: input conv {conv.in_channels}->{conv.out_channels} {kernel[0]}x{kernel[1]} set to +/- the top "
        f"{(conv.out_channels + 1) // 2} whitened patch directions of {min(len(images), PATCH_IMAGES):,} "
        f"training images{', frozen' if frozen else ''}"
    )

"""engine/whiten.py: airbench's whitening first layer, as an init and frozen."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlite.cli import main
from mnistlite.config import TrainConfig
from mnistlite.engine.optim import build_optimizer
from mnistlite.engine.whiten import whiten_input_conv, whitening_filters


def correlated_images(n=400):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 12, 12, generator=g)
    return F.avg_pool2d(x, 3, stride=1, padding=1) * 2 + 0.3  # neighbouring pixels correlated, non-zero mean


def test_filters_whiten_the_patches_in_plus_minus_pairs():
    images = correlated_images()
    w = whitening_filters(images, channels=8, kernel=(3, 3))
    assert w.shape == (8, 1, 3, 3)
    assert torch.allclose(w[1::2], -w[0::2])  # +/- pairs
    out = F.conv2d(images, w[0::2]).transpose(0, 1).reshape(4, -1)  # the four leading directions
    second_moment = out @ out.T / out.shape[1]
    assert torch.allclose(second_moment, torch.eye(4), atol=0.02)


def test_too_many_channels_for_the_patch_is_refused():
    with pytest.raises(ValueError, match="need 10 directions, patches have 9"):
        whitening_filters(correlated_images(), channels=20, kernel=(3, 3))


def test_frozen_input_conv_stays_put_and_the_rest_trains():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 10 * 10, 10)
    )
    images = correlated_images(64)
    line = whiten_input_conv(model, images, frozen=True)
    assert "top 3 whitened patch directions" in line and "frozen" in line
    cfg = TrainConfig(lr=0.1, whiten="frozen", weight_decay=1e-3)
    opt = build_optimizer(model, cfg)
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(images), torch.randint(0, 10, (64,))).backward()
    opt.step()
    after = list(model.parameters())
    assert torch.equal(after[0], before[0]) and not after[0].requires_grad
    assert all(not torch.equal(a, b) for a, b in zip(after[1:], before[1:]))
    assert after[0] is model[0].weight  # the input conv is the first Conv2d


def test_a_bad_whiten_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "mnistlite_3k", "--whiten", "maybe", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--whiten" in err
    with pytest.raises(Exception, match="whiten.*must be off, init or frozen"):
        TrainConfig(whiten="maybe").validated()

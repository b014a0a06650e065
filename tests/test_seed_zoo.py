"""The contract every registered model keeps, and the seed reproductions' fidelity.

The contract tests are parametrized over `list_models()` (the supported zoo;
the tuning candidates get a cheaper check in test_tuning.py), so models registered
later are held to them too: logits of shape (N, 10), finite, every parameter
trained, the stated parameter count, a working `dropout` override and a recipe
TrainConfig accepts. The fidelity test compares each seed model with the layer
table its source published (type, output shape and parameters, row by row).
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchinfo
from torch import nn

from mnistlite.engine.device import threads
from mnistlite.models import BUDGET, config_for, count_params, create_model, get_entry, list_models

ALL_MODELS = list_models()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny; extra threads only fight other processes for cores.
    with threads(1):
        yield


def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_logits_shape_and_finite(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    model.train(mode == "train")
    x, _ = _batch(2)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def _bn_cancelled_biases(model: nn.Module, x: torch.Tensor) -> set[int]:
    """ids of conv biases that feed straight into a BatchNorm.

    In train mode BatchNorm subtracts the per-channel batch mean, so such a bias
    has a zero gradient in exact arithmetic (rounding noise in practice). Some
    sources publish these biases and count them, so the reproductions keep them;
    they act only in eval mode, where BN uses its running statistics.
    """
    order: list[nn.Module] = []
    leaves = [m for m in model.modules() if not any(m.children())]
    hooks = [m.register_forward_hook(lambda mod, inp, out: order.append(mod)) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {
        id(a.bias)
        for a, b in zip(order, order[1:])
        if isinstance(a, nn.Conv2d) and a.bias is not None and isinstance(b, nn.BatchNorm2d)
    }


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    x, y = _batch(8)
    cancelled = _bn_cancelled_biases(model, x)
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient: not used in forward?"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        if id(p) not in cancelled:
            assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"
    if cancelled:
        model.zero_grad(set_to_none=True)
        model.eval()
        F.cross_entropy(model(x), y).backward()
        for pname, p in model.named_parameters():
            if id(p) in cancelled:
                assert p.grad is not None and p.grad.abs().sum() > 0, (
                    f"{pname} (bias before BN) has no gradient even in eval mode"
                )


@pytest.mark.parametrize("name", ALL_MODELS)
def test_stated_param_count(name: str) -> None:
    stated = get_entry(name).stated_params
    if stated is None:
        pytest.skip("no stated parameter count")
    assert count_params(create_model(name)) == stated


@pytest.mark.parametrize("name", ALL_MODELS)
def test_dropout_override(name: str) -> None:
    default = create_model(name)
    overridden = create_model(name, dropout=0.25)
    assert count_params(overridden) == count_params(default)
    dropouts = [m for m in overridden.modules() if isinstance(m, nn.Dropout)]
    assert all(m.p == 0.25 for m in dropouts)
    # An override may add dropout layers a p=0 default leaves out, never lose them.
    assert len(dropouts) >= sum(isinstance(m, nn.Dropout) for m in default.modules())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recipe_is_a_valid_config(name: str) -> None:
    recipe = get_entry(name).recipe
    cfg = config_for(name)
    for key, value in recipe.items():
        assert getattr(cfg, key) == value, key


def test_the_zoo_holds_only_supported_models() -> None:
    """`mnistlite models` is the supported zoo: seed reproductions and the ladder's rows (the flagship and
    the budget winners among them); tuning candidates live beside their rounds (experiments/)."""
    supported = [n for n in ALL_MODELS if not n.startswith("family:")]
    assert [n for n in supported if not {"seed", "ladder"} & set(get_entry(n).tags)] == []
    assert {"mnistlite_flagship", "mnistlite_sep8k", "mnistlite_frontier"} <= set(list_models("ladder"))


def test_seed_tags_follow_the_budget() -> None:
    seeds = list_models("seed")
    assert seeds
    for name in seeds:
        entry = get_entry(name)
        assert entry.stated_params is not None, name
        assert ("under8k" in entry.tags) == (entry.stated_params < BUDGET), name


# Layer tables as published (torchsummary: type, output shape, parameters).
# Sources that apply ReLU / max-pooling functionally have no rows for them.
PUBLISHED_TABLES = {
    # seed 000
    "mnistlite8k_model1": """
        Conv2d            [-1, 8, 28, 28] 80
        Conv2d            [-1, 10, 28, 28] 730
        MaxPool2d         [-1, 10, 14, 14] 0
        Conv2d            [-1, 16, 14, 14] 1,456
        Conv2d            [-1, 28, 14, 14] 4,060
        MaxPool2d         [-1, 28, 7, 7] 0
        Conv2d            [-1, 32, 5, 5] 8,096
        Conv2d            [-1, 32, 3, 3] 9,248
        Conv2d            [-1, 10, 1, 1] 2,890
    """,
    # seed 000
    "mnistlite8k_model2": """
        Conv2d            [-1, 8, 26, 26] 80
        BatchNorm2d       [-1, 8, 26, 26] 16
        Conv2d            [-1, 10, 24, 24] 730
        BatchNorm2d       [-1, 10, 24, 24] 20
        MaxPool2d         [-1, 10, 12, 12] 0
        Conv2d            [-1, 8, 12, 12] 88
        BatchNorm2d       [-1, 8, 12, 12] 16
        Conv2d            [-1, 16, 10, 10] 1,168
        BatchNorm2d       [-1, 16, 10, 10] 32
        Conv2d            [-1, 16, 8, 8] 2,320
        BatchNorm2d       [-1, 16, 8, 8] 32
        MaxPool2d         [-1, 16, 4, 4] 0
        Conv2d            [-1, 10, 4, 4] 170
        BatchNorm2d       [-1, 10, 4, 4] 20
        Conv2d            [-1, 10, 2, 2] 910
        AdaptiveAvgPool2d [-1, 10, 1, 1] 0
    """,
    # seed 000
    "mnistlite8k_model3": """
        Conv2d            [-1, 8, 26, 26] 80
        BatchNorm2d       [-1, 8, 26, 26] 16
        Dropout           [-1, 8, 26, 26] 0
        Conv2d            [-1, 10, 24, 24] 730
        BatchNorm2d       [-1, 10, 24, 24] 20
        Dropout           [-1, 10, 24, 24] 0
        MaxPool2d         [-1, 10, 12, 12] 0
        Conv2d            [-1, 8, 12, 12] 88
        BatchNorm2d       [-1, 8, 12, 12] 16
        Dropout           [-1, 8, 12, 12] 0
        Conv2d            [-1, 16, 10, 10] 1,168
        BatchNorm2d       [-1, 16, 10, 10] 32
        Dropout           [-1, 16, 10, 10] 0
        Conv2d            [-1, 32, 8, 8] 4,640
        BatchNorm2d       [-1, 32, 8, 8] 64
        Dropout           [-1, 32, 8, 8] 0
        MaxPool2d         [-1, 32, 4, 4] 0
        Conv2d            [-1, 8, 4, 4] 264
        BatchNorm2d       [-1, 8, 4, 4] 16
        Dropout           [-1, 8, 4, 4] 0
        Conv2d            [-1, 10, 2, 2] 730
        AdaptiveAvgPool2d [-1, 10, 1, 1] 0
    """,
    # seed 001
    "mnist8k_model3": """
        Conv2d            [-1, 10, 26, 26] 90
        BatchNorm2d       [-1, 10, 26, 26] 20
        ReLU              [-1, 10, 26, 26] 0
        Dropout           [-1, 10, 26, 26] 0
        Conv2d            [-1, 15, 24, 24] 1,350
        BatchNorm2d       [-1, 15, 24, 24] 30
        ReLU              [-1, 15, 24, 24] 0
        Dropout           [-1, 15, 24, 24] 0
        Conv2d            [-1, 10, 24, 24] 150
        MaxPool2d         [-1, 10, 12, 12] 0
        Conv2d            [-1, 16, 10, 10] 1,440
        BatchNorm2d       [-1, 16, 10, 10] 32
        ReLU              [-1, 16, 10, 10] 0
        Dropout           [-1, 16, 10, 10] 0
        Conv2d            [-1, 16, 8, 8] 2,304
        BatchNorm2d       [-1, 16, 8, 8] 32
        ReLU              [-1, 16, 8, 8] 0
        Dropout           [-1, 16, 8, 8] 0
        Conv2d            [-1, 16, 6, 6] 2,304
        BatchNorm2d       [-1, 16, 6, 6] 32
        ReLU              [-1, 16, 6, 6] 0
        Dropout           [-1, 16, 6, 6] 0
        AvgPool2d         [-1, 16, 1, 1] 0
        Conv2d            [-1, 10, 1, 1] 160
    """,
    # seed 002
    "lowparam_7544": """
        Conv2d            [-1, 16, 26, 26] 144
        ReLU              [-1, 16, 26, 26] 0
        BatchNorm2d       [-1, 16, 26, 26] 32
        Dropout           [-1, 16, 26, 26] 0
        Conv2d            [-1, 10, 24, 24] 1,440
        ReLU              [-1, 10, 24, 24] 0
        BatchNorm2d       [-1, 10, 24, 24] 20
        Dropout           [-1, 10, 24, 24] 0
        Conv2d            [-1, 10, 24, 24] 100
        MaxPool2d         [-1, 10, 12, 12] 0
        Conv2d            [-1, 10, 10, 10] 900
        ReLU              [-1, 10, 10, 10] 0
        BatchNorm2d       [-1, 10, 10, 10] 20
        Dropout           [-1, 10, 10, 10] 0
        Conv2d            [-1, 10, 8, 8] 900
        ReLU              [-1, 10, 8, 8] 0
        BatchNorm2d       [-1, 10, 8, 8] 20
        Dropout           [-1, 10, 8, 8] 0
        Conv2d            [-1, 16, 6, 6] 1,440
        ReLU              [-1, 16, 6, 6] 0
        BatchNorm2d       [-1, 16, 6, 6] 32
        Dropout           [-1, 16, 6, 6] 0
        Conv2d            [-1, 16, 6, 6] 2,304
        ReLU              [-1, 16, 6, 6] 0
        BatchNorm2d       [-1, 16, 6, 6] 32
        Dropout           [-1, 16, 6, 6] 0
        AvgPool2d         [-1, 16, 1, 1] 0
        Conv2d            [-1, 10, 1, 1] 160
    """,
    # seed 003
    "efficientmnist_20k": """
        Conv2d            [-1, 8, 26, 26] 80
        BatchNorm2d       [-1, 8, 26, 26] 16
        Conv2d            [-1, 16, 24, 24] 1,168
        BatchNorm2d       [-1, 16, 24, 24] 32
        Conv2d            [-1, 28, 22, 22] 4,060
        BatchNorm2d       [-1, 28, 22, 22] 56
        Conv2d            [-1, 8, 22, 22] 232
        BatchNorm2d       [-1, 8, 22, 22] 16
        Conv2d            [-1, 16, 9, 9] 1,168
        BatchNorm2d       [-1, 16, 9, 9] 32
        Conv2d            [-1, 16, 7, 7] 2,320
        BatchNorm2d       [-1, 16, 7, 7] 32
        Conv2d            [-1, 28, 5, 5] 4,060
        AdaptiveAvgPool2d [-1, 28, 1, 1] 0
        Linear            [-1, 10] 290
    """,
    # seed 004
    "progression_model1": """
        Conv2d            [-1, 10, 26, 26] 90
        BatchNorm2d       [-1, 10, 26, 26] 20
        ReLU              [-1, 10, 26, 26] 0
        Conv2d            [-1, 10, 24, 24] 900
        BatchNorm2d       [-1, 10, 24, 24] 20
        ReLU              [-1, 10, 24, 24] 0
        Conv2d            [-1, 20, 22, 22] 1,800
        BatchNorm2d       [-1, 20, 22, 22] 40
        ReLU              [-1, 20, 22, 22] 0
        MaxPool2d         [-1, 20, 11, 11] 0
        Conv2d            [-1, 10, 11, 11] 200
        BatchNorm2d       [-1, 10, 11, 11] 20
        ReLU              [-1, 10, 11, 11] 0
        Conv2d            [-1, 10, 9, 9] 900
        BatchNorm2d       [-1, 10, 9, 9] 20
        ReLU              [-1, 10, 9, 9] 0
        Conv2d            [-1, 20, 7, 7] 1,800
        BatchNorm2d       [-1, 20, 7, 7] 40
        ReLU              [-1, 20, 7, 7] 0
        Conv2d            [-1, 10, 7, 7] 200
        BatchNorm2d       [-1, 10, 7, 7] 20
        ReLU              [-1, 10, 7, 7] 0
        Conv2d            [-1, 10, 1, 1] 4,900
    """,
    # seed 004
    "progression_model2": """
        Conv2d            [-1, 8, 26, 26] 72
        BatchNorm2d       [-1, 8, 26, 26] 16
        ReLU              [-1, 8, 26, 26] 0
        Conv2d            [-1, 10, 24, 24] 720
        BatchNorm2d       [-1, 10, 24, 24] 20
        ReLU              [-1, 10, 24, 24] 0
        MaxPool2d         [-1, 10, 12, 12] 0
        Conv2d            [-1, 8, 12, 12] 80
        BatchNorm2d       [-1, 8, 12, 12] 16
        ReLU              [-1, 8, 12, 12] 0
        Dropout           [-1, 8, 12, 12] 0
        Conv2d            [-1, 16, 10, 10] 1,152
        BatchNorm2d       [-1, 16, 10, 10] 32
        ReLU              [-1, 16, 10, 10] 0
        Conv2d            [-1, 16, 8, 8] 2,304
        BatchNorm2d       [-1, 16, 8, 8] 32
        ReLU              [-1, 16, 8, 8] 0
        Conv2d            [-1, 10, 8, 8] 160
        BatchNorm2d       [-1, 10, 8, 8] 20
        ReLU              [-1, 10, 8, 8] 0
        Dropout           [-1, 10, 8, 8] 0
        Conv2d            [-1, 20, 6, 6] 1,800
        BatchNorm2d       [-1, 20, 6, 6] 40
        ReLU              [-1, 20, 6, 6] 0
        Conv2d            [-1, 10, 6, 6] 200
        AvgPool2d         [-1, 10, 1, 1] 0
    """,
}

_ROW = re.compile(r"(\w+)\s+\[([-\d, ]+)\]\s+([\d,]+)")
# Layers some sources apply functionally (F.relu, F.max_pool2d, x.view): ignored
# where the published table has no row of that type, compared where it has.
_FUNCTIONAL_IN_SOME_SOURCES = {"ReLU", "MaxPool2d", "Flatten"}


def _published(name: str) -> list[tuple[str, tuple[int, ...], int]]:
    rows = []
    for line in PUBLISHED_TABLES[name].strip().splitlines():
        match = _ROW.fullmatch(line.strip())
        assert match, line
        kind, shape, params = match.groups()
        dims = tuple(int(d) for d in shape.split(",")[1:])  # drop the batch dim
        rows.append((kind, dims, int(params.replace(",", ""))))
    return rows


@pytest.mark.parametrize("name", sorted(PUBLISHED_TABLES))
def test_layer_table_matches_published(name: str) -> None:
    expected = _published(name)
    listed = {kind for kind, _, _ in expected}
    info = torchinfo.summary(create_model(name), input_size=(1, 1, 28, 28), verbose=0)
    actual = [
        (layer.class_name, tuple(layer.output_size[1:]), layer.num_params)
        for layer in info.summary_list
        if layer.is_leaf_layer and (layer.class_name in listed or layer.class_name not in _FUNCTIONAL_IN_SOME_SOURCES)
    ]
    assert actual == expected

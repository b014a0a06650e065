"""Reproductions of the five seed projects' published models, layer table for layer table (tests/test_seed_zoo.py),
except that they return raw logits and use modules where a source applies ReLU or pooling functionally. Recipes
come from the seed README and, where it is silent, the source's code; comments say what is approximated, and how."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from .registry import BUDGET, register_model


def conv_bn_relu(
    cin: int, cout: int, kernel: int = 3, order: str = "cbr", padding: int = 0, *, bias: bool, dropout: float
) -> nn.Sequential:
    layers = {
        "c": ("conv", lambda: nn.Conv2d(cin, cout, kernel, padding=padding, bias=bias)),
        "b": ("bn", lambda: nn.BatchNorm2d(cout)),
        "r": ("relu", nn.ReLU),
        "d": ("dropout", lambda: nn.Dropout(dropout)),
    }
    return nn.Sequential(OrderedDict((name, make()) for name, make in (layers[letter] for letter in order)))


def _seed(
    name: str,
    source: str,
    stated_params: int,
    description: str,
    recipe: dict[str, Any],
    *stages: list[tuple],
    bias: bool,
    rate: float | None = None,
) -> None:
    """Register the model `stages` build, a row per row of its source's table, named as the source names them:
    (name, in, out[, kernel[, order[, padding]]]) is a conv block whose layers `order` spells (c Conv2d,
    b BatchNorm2d, r ReLU, d Dropout; "cbr" by default), (name, layer class, *args) any other layer.
    A model's convs all have a bias or none (BN cancels one, but some sources publish and count it), and its
    dropout layers share the rate `rate` (None: it has none and ignores `dropout`)."""
    tags = ("seed", "under8k") if stated_params < BUDGET else ("seed",)

    @register_model(name, source=source, tags=tags, recipe=recipe, stated_params=stated_params, description=description)
    def factory(dropout: float | None = None) -> nn.Module:
        p = 0.0 if rate is None else (rate if dropout is None else float(dropout))
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        return nn.Sequential(
            OrderedDict(
                (name, conv_bn_relu(*args, bias=bias, dropout=p) if isinstance(args[0], int) else args[0](*args[1:]))
                for stage in stages
                for name, *args in stage
            )
        )


# The classic recipe these course repos share, pinned so a reproduction never drifts when defaults do.
_CLASSIC: dict[str, Any] = dict(epochs=15, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False)
_CLASSIC.update(weight_decay=0.0, scheduler="none", rotation=0.0, translate=0.0, scale=0.0, shear=0.0, crop_p=0.0)


def _recipe(*groups: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The classic recipe, then `groups` (each a line of related settings), then `overrides`."""
    recipe = dict(_CLASSIC)
    for group in groups:
        recipe.update(group)
    return recipe | overrides


POOL = (nn.MaxPool2d, 2, 2)
FLATTEN = (nn.Flatten,)
GAP = (nn.AdaptiveAvgPool2d, 1)

# --- seed 000: MnistLite-8k (divya-r-kamat/MnistLite-8k) ------------------------
# Recipes from MnistLite_8k_modelrun.ipynb; batch 128 = the README's 469 batches/epoch.
_MNISTLITE8K_BASELINE = _recipe(scheduler="step", step_size=15, gamma=0.1)

# conv7 sees a 3x3 map, so it is itself the 10-way classifier (1x1 output): logits, no ReLU.
_seed(
    "mnistlite8k_model1",
    "MnistLite-8k, Model1",
    26_560,
    "MnistLite-8k Model1: 26.5k-parameter baseline, seven biased convs, no BN, no GAP.",
    _MNISTLITE8K_BASELINE,
    [("conv1", 1, 8, 3, "cr", 1), ("conv2", 8, 10, 3, "cr", 1), ("pool1", *POOL)],
    [("conv3", 10, 16, 3, "cr", 1), ("conv4", 16, 28, 3, "cr", 1), ("pool2", *POOL)],
    [("conv5", 28, 32, 3, "cr"), ("conv6", 32, 32, 3, "cr"), ("conv7", 32, 10, 3, "c"), ("flatten", *FLATTEN)],
    bias=True,
)

# Convs keep their bias as published (it counts towards 5,602 even though BN cancels it); conv7: 4x4 -> 2x2, logits.
_seed(
    "mnistlite8k_model2",
    "MnistLite-8k, Model2",
    5_602,
    "MnistLite-8k Model2: 5.6k parameters, Conv-BN-ReLU, two max-pools, 1x1 transitions, GAP.",
    _MNISTLITE8K_BASELINE,
    [("conv1", 1, 8), ("conv2", 8, 10), ("pool1", *POOL)],
    [("conv3", 10, 8, 1), ("conv4", 8, 16), ("conv5", 16, 16), ("pool2", *POOL)],
    [("conv6", 16, 10, 1), ("conv7", 10, 10, 3, "c"), ("gap", *GAP), ("flatten", *FLATTEN)],
    bias=True,
)

# Dropout(p=0.01) after each of the six BN layers, as the README table shows (after the source's functional ReLU).
_seed(
    "mnistlite8k_model3",
    "MnistLite-8k, Model3",
    7_864,
    "MnistLite-8k Model3: 7.9k parameters, Model2 with conv5 -> 32 and Dropout after every BN.",
    # The run behind the README's 99.42%. Its CosineAnnealingLR(T_max=15, eta_min=5e-4) is
    # approximated by OneCycle (div_factor=1, a 1% flat start, cosine down to 0.03 / 60),
    # stepped per batch, and cycling momentum in 0.85-0.95 instead of a fixed 0.9.
    _recipe(
        dict(lr=0.03, nesterov=True, weight_decay=1e-4, scheduler="onecycle", max_lr=0.03),
        dict(div_factor=1.0, pct_start=0.01, final_div_factor=60.0, anneal_strategy="cos"),
        dict(rotation=3.0, translate=0.05, shear=5.0),
    ),
    [("conv1", 1, 8, 3, "cbrd"), ("conv2", 8, 10, 3, "cbrd"), ("pool1", *POOL)],
    [("conv3", 10, 8, 1, "cbrd"), ("conv4", 8, 16, 3, "cbrd"), ("conv5", 16, 32, 3, "cbrd"), ("pool2", *POOL)],
    [("conv6", 32, 8, 1, "cbrd"), ("conv7", 8, 10, 3, "c"), ("gap", *GAP), ("flatten", *FLATTEN)],
    bias=True,
    rate=0.01,
)

# --- seed 001: MNIST-8k (mshsingh772/MNIST-8k) ----------------------------------
# Dropout 0.05 from the source's models/model3.py (the README gives no rate).
_seed(
    "mnist8k_model3",
    "MNIST-8k, Model 3",
    7_944,
    "MNIST-8k Model 3: 7.9k parameters, bias-free Conv-BN-ReLU-Dropout, AvgPool(6), 1x1 conv head.",
    # From the README and the source (run_experiments.py, data/load_data.py); its
    # ColorJitter(brightness=0.1, contrast=0.1) is not expressible, so dropped.
    _recipe(lr=0.5, scheduler="step", step_size=6, gamma=0.1, rotation=7.0),
    [("conv1", 1, 10, 3, "cbrd"), ("conv2", 10, 15, 3, "cbrd"), ("conv3", 15, 10, 1, "c"), ("pool1", *POOL)],
    [("conv4", 10, 16, 3, "cbrd"), ("conv5", 16, 16, 3, "cbrd"), ("conv6", 16, 16, 3, "cbrd")],
    [("gap", nn.AvgPool2d, 6), ("conv7", 16, 10, 1, "c"), ("flatten", *FLATTEN)],
    bias=False,
    rate=0.05,
)

# --- seed 002: MNIST Digit Classification Model (pradeep6kumar/mnist_low_param_model_v2)
# Dropout 0.05 from the source's model.py (the README gives no rate).
_seed(
    "lowparam_7544",
    "MNIST Digit Classification Model, 7,544-parameter model",
    7_544,
    "7,544-parameter model: eight bias-free convs, Conv-ReLU-BN-Dropout, AvgPool(6), 1x1 head.",
    # From the README; the source's utils.py RandomRotation((-7, 3)) becomes +-5 degrees, the same 10-degree spread.
    _recipe(
        dict(nesterov=True, weight_decay=1e-4, scheduler="onecycle", max_lr=0.02),
        dict(pct_start=0.2, div_factor=25.0, final_div_factor=1e4, anneal_strategy="cos"),
        rotation=5.0,
    ),
    [("conv1", 1, 16, 3, "crbd"), ("conv2", 16, 10, 3, "crbd"), ("conv3", 10, 10, 1, "c"), ("pool1", *POOL)],
    [("conv4", 10, 10, 3, "crbd"), ("conv5", 10, 10, 3, "crbd"), ("conv6", 10, 16, 3, "crbd")],
    [("conv7", 16, 16, 3, "crbd", 1), ("gap", nn.AvgPool2d, 6), ("conv8", 16, 10, 1, "c"), ("flatten", *FLATTEN)],
    bias=False,
    rate=0.05,
)

# --- seed 003: EfficientMnist-Under20K (divya-r-kamat/EfficientMnist-Under20K) ---
# The source pools functionally after conv4 (its table has no MaxPool row; conv5's 9x9
# output shows it). conv7 has a ReLU but no BN, as in the source's forward.
_seed(
    "efficientmnist_20k",
    "EfficientMnist-Under20K, Iter6",
    13_562,
    "EfficientMnist-Under20K Iter6: 13.6k parameters, Conv-BN-ReLU, GAP + Linear(28, 10).",
    # From the README and the source (EfficientMnistNN_Iter6.ipynb).
    _recipe(
        dict(epochs=20, optimizer="adam", lr=0.001, scheduler="step", step_size=15, gamma=0.1),
        dict(rotation=15.0, crop_p=0.1, crop_size=22),
    ),
    [("conv1", 1, 8), ("conv2", 8, 16), ("conv3", 16, 28), ("conv4", 28, 8, 1), ("pool1", *POOL)],
    [("conv5", 8, 16), ("conv6", 16, 16), ("conv7", 16, 28, 3, "cr")],
    [("gap", *GAP), ("flatten", *FLATTEN), ("fc", nn.Linear, 28, 10)],
    bias=True,
)

# --- seed 004: MNIST training progression (sidrocks/mnist_training_progression_assignment)
# The source's train.py: the classic recipe at batch 64 (the README's 938 batches/epoch).
_PROGRESSION = _recipe(batch_size=64)

_seed(
    "progression_model1",
    "MNIST training progression (sidrocks), Model_1",
    10_970,
    "Progression Model_1: 11k parameters, bias-free Conv-BN-ReLU, a 7x7 conv as classifier.",
    _PROGRESSION,
    [("conv1", 1, 10), ("conv2", 10, 10), ("conv3", 10, 20), ("pool1", *POOL)],
    [("conv4", 20, 10, 1), ("conv5", 10, 10), ("conv6", 10, 20), ("conv7", 20, 10, 1)],
    [("conv8", 10, 10, 7, "c"), ("flatten", *FLATTEN)],
    bias=False,
)

# Dropout 0.1 from the source's Model_2.py (the README gives no rate).
_seed(
    "progression_model2",
    "MNIST training progression (sidrocks), Model_2",
    6_664,
    "Progression Model_2: 6.7k parameters, bias-free Conv-BN-ReLU, dropout after both 1x1s, GAP.",
    _PROGRESSION,
    [("conv1", 1, 8), ("conv2", 8, 10), ("pool1", *POOL)],
    [("conv3", 10, 8, 1, "cbrd"), ("conv4", 8, 16), ("conv5", 16, 16), ("conv6", 16, 10, 1, "cbrd")],
    [("conv7", 10, 20), ("conv8", 20, 10, 1, "c"), ("gap", nn.AvgPool2d, 6), ("flatten", *FLATTEN)],
    bias=False,
    rate=0.1,
)

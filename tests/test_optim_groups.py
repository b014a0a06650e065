"""airbench-style parameter groups (engine/optim.py): off by default, exact when on."""

import torch
import torch.nn.functional as F

from mnistlite.config import config_differences
from mnistlite.engine.optim import Schedule, build_optimizer, param_groups
from mnistlite.models import config_for, get_entry


def _flagship():
    torch.manual_seed(0)
    return get_entry("mnistlite_flagship").build()


def _cfg(**over):
    return config_for("mnistlite_flagship", **over)


def _bias_like_names(model):
    bn = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    return bn | {n for n, _ in model.named_parameters() if n.endswith(".bias")}


def test_defaults_are_one_group_of_every_parameter_in_order():
    model = _flagship()
    groups = param_groups(model, _cfg())
    assert len(groups) == 1
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]
    opt = build_optimizer(model, _cfg())
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == _cfg().weight_decay == 5e-4


def test_old_saved_configs_are_the_same_runs():
    # A config.json saved before these fields (and elastic) existed has none of them.
    saved = _cfg().to_dict()
    for name in ("bias_lr_scale", "bias_decay", "bn_scale_frozen", "elastic_alpha", "elastic_sigma"):
        saved.pop(name)
    assert config_differences(saved, _cfg()) == {}
    assert "elastic_alpha" in config_differences(saved, _cfg(elastic_alpha=16.0))


def test_no_bias_decay_splits_off_exactly_biases_and_bn_weights():
    model = _flagship()
    opt = build_optimizer(model, _cfg(bias_decay=False))
    names = {id(p): n for n, p in model.named_parameters()}
    rest, bias = opt.param_groups
    assert {names[id(p)] for p in bias["params"]} == _bias_like_names(model)
    assert "head.bias" in {names[id(p)] for p in bias["params"]}
    assert all(p.ndim == 4 or names[id(p)] == "head.weight" for p in rest["params"])
    assert bias["weight_decay"] == 0.0 and rest["weight_decay"] == _cfg().weight_decay
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_bias_lr_scale_holds_through_the_one_cycle_schedule():
    model = _flagship()
    cfg = _cfg(bias_lr_scale=4.0)
    opt = build_optimizer(model, cfg)
    sched = Schedule(opt, cfg, steps_per_epoch=10)
    for _ in range(60):
        rest, bias = (g["lr"] for g in opt.param_groups)
        assert abs(bias - 4.0 * rest) < 1e-12 * max(1.0, bias)
        opt.step()
        sched.after_batch()
    assert max(g["lr"] for g in opt.param_groups) < cfg.max_lr * 4.0  # past the peak by now


def test_frozen_bn_scale_stays_one_and_the_rest_trains():
    model = _flagship()
    cfg = _cfg(bn_scale_frozen=True)
    opt = build_optimizer(model, cfg)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    model.train()
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert all(not m.weight.requires_grad and torch.equal(m.weight, torch.ones_like(m.weight)) for m in bn)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "head.weight" in moved and all(f"{n}.bias" in moved for n, m in model.named_modules() if m in bn)

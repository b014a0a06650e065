"""Grouped training: k seeds as one packed network compute what k separate networks compute."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlite.bench import synthetic_data
from mnistlite.config import TrainConfig
from mnistlite.engine.grouped import group_models, ungroup_into, unsupported_modules
from mnistlite.errors import MnistliteError
from mnistlite.fast.dropout import Dropout
from mnistlite.models import get_entry
from mnistlite.runs import grouping
from mnistlite.runs import rundir as rd

K = 3


def _conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=True),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=2, bias=False),  # a grouped conv stays grouped per copy
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )


def _gap_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Identity(), nn.Linear(6, 4)
    )


def _dropout_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.Dropout2d(0.3), Dropout(0.1), nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


NETS = {"conv_bn_pools_linear": _conv_net, "gap": _gap_net, "dropout": _dropout_net}


def _copies(make, k=K):
    out = []
    for s in range(k):
        torch.manual_seed(s)
        out.append(make())
    return out


def _batches(k=K, n=6, c=2, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, side, side, generator=g) for _ in range(k)]


def test_pack_then_unpack_gives_back_identical_weights():
    models = _copies(lambda: get_entry("mnistlite_flagship").build())
    grouped = group_models(models)
    fresh = _copies(lambda: get_entry("mnistlite_flagship").build(), K)
    for m in fresh:  # other weights, to see them overwritten
        for p in m.parameters():
            p.data.add_(1.0)
    ungroup_into(grouped, fresh)
    for a, b in zip(models, fresh):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", sorted(NETS))
def test_grouped_forward_equals_the_separate_forwards_in_training_mode(name):
    models = _copies(NETS[name])
    grouped = group_models(models, check_shape=(2, 8, 8))
    xs = _batches()
    if name == "dropout":  # masks are random: compare with dropout off (eval), masks checked below
        grouped.eval()
        for m in models:
            m.eval()
    want = [m(x) for m, x in zip(models, xs)]
    got = grouped(torch.cat(xs, 1))
    for g, w in zip(got.chunk(K, 1), want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    if name == "conv_bn_pools_linear":  # BN's running statistics are each copy's own
        after = copy.deepcopy(models)
        ungroup_into(grouped, after)
        for m, a in zip(models, after):
            torch.testing.assert_close(m[1].running_mean, a[1].running_mean)
            torch.testing.assert_close(m[4].running_var, a[4].running_var)


def test_dropout_masks_differ_between_copies():
    models = _copies(lambda: nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.Dropout(0.5)))
    for m in models:
        m[0].weight.data.fill_(1.0)
    grouped = group_models(models, check_shape=(1, 4, 4)).train()
    y = grouped(torch.ones(2, K, 4, 4)).chunk(K, 1)
    assert not torch.equal(y[0] == 0, y[1] == 0)


def test_flagship_fused_forward_equals_the_separate_ones():
    """The fused BN-ReLU fast path (channels_last, CPU, training) sees k*C channels: per-copy statistics."""
    models = [m.to(memory_format=torch.channels_last) for m in _copies(lambda: get_entry("mnistlite_flagship").build())]
    grouped = group_models(models).to(memory_format=torch.channels_last)
    xs = _batches(c=1, side=28)
    want = [m(x.contiguous(memory_format=torch.channels_last)) for m, x in zip(models, xs)]
    got = grouped(torch.cat(xs, 1).contiguous(memory_format=torch.channels_last))
    for g, w in zip(got.chunk(K, 1), want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_one_grouped_sgd_step_equals_the_separate_steps():
    """Loss = sum of the copies' mean losses: each copy's gradient (and SGD update) is its own run's."""
    cfg = TrainConfig.for_model("mnistlite_flagship")  # momentum, nesterov, weight decay
    from mnistlite.engine.optim import build_optimizer

    models = _copies(_conv_net)
    grouped = group_models(models, check_shape=(2, 8, 8))
    opts = [build_optimizer(m, cfg) for m in models]
    gopt = build_optimizer(grouped, cfg)
    for step in range(2):  # the second step uses the momentum buffers
        xs = _batches(seed=step)
        ys = [torch.randint(3, (6,), generator=torch.Generator().manual_seed(10 * step + j)) for j in range(K)]
        for m, o, x, y in zip(models, opts, xs, ys):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
        logits = grouped(torch.cat(xs, 1)).view(6, K, -1).transpose(0, 1)
        loss = sum(F.cross_entropy(logits[j], ys[j]) for j in range(K))
        gopt.zero_grad()
        loss.backward()
        gopt.step()
    after = _copies(_conv_net)
    ungroup_into(grouped, after)
    for m, a in zip(models, after):
        for (k1, v1), (_, v2) in zip(m.state_dict().items(), a.state_dict().items()):
            torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-6, msg=k1)


class _Mixes(nn.Module):
    """Reshapes by a fixed class count: the copies' logits would mix."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 28)

    def forward(self, x):
        return F.log_softmax(self.conv(x).flatten(1), dim=1)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.LayerNorm([4, 26, 26])), "LayerNorm"),
        (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU()), "GELU"),
        (_Mixes, "mixes"),
    ],
)
def test_unsupported_models_are_refused_with_one_line(make, words):
    models = _copies(make, 2)
    with pytest.raises(MnistliteError) as e:
        group_models(models)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unsupported_modules_names_them():
    assert unsupported_modules(get_entry("mnistlite_flagship").build()) == []
    assert unsupported_modules(nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU())) == ["1 (SiLU)"]


def test_parse_group():
    assert [grouping.parse_group(v) for v in ("auto", "OFF", "3")] == ["auto", "off", "3"]
    for bad in ("0", "-2", "x", ""):
        with pytest.raises(MnistliteError, match="--group"):
            grouping.parse_group(bad)


TINY = dict(epochs=1, batch_size=64, threads=1, device="cpu", val_size=0)


def test_grouped_seeds_write_ordinary_run_folders(tmp_path, monkeypatch):
    """A 1-epoch grouped `seeds` run: ordinary folders, marked trained_grouped, resumable state;
    each copy's first epoch is its separate run's up to rounding (same init, order, warps)."""
    import mnistlite.runs.plan as plan
    from mnistlite.engine import train
    from mnistlite.engine.checkpoint import load_checkpoint
    from mnistlite.runs.seeds import run_seeds

    data = synthetic_data(256)
    monkeypatch.setattr(plan, "load_dataset", lambda *a, **kw: data)
    base = TrainConfig.for_model("mnistlite_2k", **TINY)
    lines: list[str] = []
    run_seeds(base, [1, 2], tmp_path / "g", group="2", echo=lines.append)
    assert any("trained grouped" in line for line in lines)
    for s in (1, 2):
        run = tmp_path / "g" / f"seed{s}"
        assert {rd.CONFIG, rd.METRICS, rd.RESULT, rd.MODEL, rd.CHECKPOINT, rd.LAYER_TABLE, rd.LOG} <= {
            p.name for p in run.iterdir()
        }
        result = json.loads((run / rd.RESULT).read_text())
        assert result["trained_grouped"] == {"copies": 2, "seeds": [1, 2]} and result["seed"] == s
        written = json.loads((run / rd.CONFIG).read_text())
        assert written["seed"] == s
        assert written["precision"] == "fp32"  # resolved once for the group and recorded, never "auto"
        assert plan.run_state(run, base.replace(seed=s))[0] == "done"  # the same-run rule as ever
        assert load_checkpoint(run / rd.CHECKPOINT)["epoch"] == 1
    alone = train(base.replace(seed=2), data=data, quiet=True)
    grouped_row = rd.read_metrics(tmp_path / "g" / "seed2" / rd.METRICS)[0]
    assert grouped_row["train_loss"] == pytest.approx(alone.metrics[0]["train_loss"], rel=1e-4)
    assert grouped_row["test_acc"] == pytest.approx(alone.metrics[0]["test_acc"], abs=0.5)
    model = torch.load(tmp_path / "g" / "seed2" / rd.MODEL, weights_only=True)
    assert set(model["model"]) == set(alone.model.state_dict())  # an ordinary model.pt


def test_groups_form_only_from_fresh_runs_of_one_recipe(tmp_path):
    from mnistlite.runs.plan import PlannedRun

    base = TrainConfig.for_model("mnistlite_2k", **TINY)
    runs = [PlannedRun(f"s{s}", base.replace(seed=s), tmp_path / f"s{s}") for s in range(1, 6)]
    runs.append(PlannedRun("other", base.replace(seed=9, max_lr=0.01), tmp_path / "o"))
    runs[0].status = "resume"
    groups, alone = grouping.form_groups(runs, "3")
    assert [[r.config.seed for r in g] for g in groups] == [[2, 3, 4]]
    assert sorted(r.config.seed for r in alone) == [1, 5, 9]
    assert grouping.form_groups(runs, "off") == ([], runs)


def test_auto_trains_separately_where_the_calibration_says_it_does_not_pay(tmp_path, monkeypatch):
    from mnistlite.runs.plan import PlannedRun

    base = TrainConfig.for_model("mnistlite_2k", **TINY)
    runs = [PlannedRun(f"s{s}", base.replace(seed=s), tmp_path / f"s{s}") for s in (1, 2)]
    gain = {"copies": 2, "one_images_per_s": 100.0, "grouped_images_per_s": 105.0, "gain": 1.05}
    monkeypatch.setattr(grouping, "calibrate", lambda cfg, k: gain)
    lines: list[str] = []
    assert grouping.form_groups(runs, "auto", lines.append) == ([], runs)
    assert "training separately" in lines[0]
    monkeypatch.setattr(grouping, "calibrate", lambda cfg, k: {**gain, "gain": 1.3, "grouped_images_per_s": 130.0})
    assert grouping.form_groups(runs, "auto", lines.append)[0] == [runs]


def test_calibrate_measures_both():
    cal = grouping.calibrate(TrainConfig.for_model("mnistlite_2k", **TINY), 2)
    assert cal["one_images_per_s"] > 0 and cal["grouped_images_per_s"] > 0 and cal["copies"] == 2


def test_an_interrupted_group_resumes_seed_by_seed(tmp_path, monkeypatch):
    """Each folder's checkpoint is an ordinary run's: the same command resumes the seeds alone."""
    import mnistlite.engine.grouped_train as gt
    import mnistlite.runs.plan as plan
    from mnistlite.engine import TrainingInterrupted
    from mnistlite.runs.seeds import run_seeds

    data = synthetic_data(256)
    monkeypatch.setattr(plan, "load_dataset", lambda *a, **kw: data)
    base = TrainConfig.for_model("mnistlite_2k", **{**TINY, "epochs": 2})
    real, calls = gt._train_epoch, []

    def stop_in_epoch_two(group, copies, train, stop, step):
        calls.append(1)
        if len(calls) == 2:
            stop.append("SIGTERM")
        return real(group, copies, train, stop, step)

    monkeypatch.setattr(gt, "_train_epoch", stop_in_epoch_two)
    with pytest.raises(TrainingInterrupted, match="1 epoch"):
        run_seeds(base, [1, 2], tmp_path / "g", group="2", echo=lambda *_: None)
    first = {s: rd.read_metrics(tmp_path / "g" / f"seed{s}" / rd.METRICS) for s in (1, 2)}
    assert all(len(rows) == 1 for rows in first.values())
    assert all(plan.run_state(tmp_path / "g" / f"seed{s}", base.replace(seed=s))[0] == "resume" for s in (1, 2))
    monkeypatch.setattr(gt, "_train_epoch", lambda *a: pytest.fail("a resumed seed trains alone"))
    run_seeds(base, [1, 2], tmp_path / "g", group="2", echo=lambda *_: None)
    for s in (1, 2):
        rows = rd.read_metrics(tmp_path / "g" / f"seed{s}" / rd.METRICS)
        assert len(rows) == 2 and rows[0] == first[s][0]
        assert json.loads((tmp_path / "g" / f"seed{s}" / rd.RESULT).read_text())["sessions"] == 2


@pytest.mark.slow
def test_groups_spread_over_pool_workers(data_root, tmp_path):
    """--jobs 2 --group 2 with three seeds: seeds 1-2 train as one grouped network in one worker,
    seed 3 alone in the other; every folder is an ordinary finished run."""
    from mnistlite.runs.seeds import run_seeds

    base = TrainConfig.for_model(
        "mnistlite_2k", epochs=1, limit_train=500, val_size=100, device="cpu", data_dir=str(data_root), download=False
    )
    lines: list[str] = []
    run_seeds(base, [1, 2, 3], tmp_path / "g", jobs=2, group="2", echo=lines.append)
    assert any("seeds [1, 2] trained grouped in one worker" in line for line in lines), lines
    grouped = {}
    for s in (1, 2, 3):
        result = json.loads((tmp_path / "g" / f"seed{s}" / rd.RESULT).read_text())
        assert result["seed"] == s and result["final_val_acc"] is not None
        grouped[s] = result.get("trained_grouped")
    assert grouped[1] == grouped[2] == {"copies": 2, "seeds": [1, 2]} and grouped[3] is None


def test_form_groups_spreads_seeds_over_jobs():
    from types import SimpleNamespace

    runs = [SimpleNamespace(status="new", config=TrainConfig(seed=s)) for s in range(1, 6)]
    groups, alone = grouping.form_groups(runs, "4", spread=2)
    assert [[r.config.seed for r in g] for g in groups] == [[1, 2, 3], [4, 5]] and alone == []
    groups, alone = grouping.form_groups(runs, "2", spread=1)
    assert [[r.config.seed for r in g] for g in groups] == [[1, 2], [3, 4]] and [r.config.seed for r in alone] == [5]

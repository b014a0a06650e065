"""The BatchNorm-ReLU path by measurement (engine/bn_path.py): the rule, the cache, the record, the same-run rule."""

import json
import shutil
import types
from pathlib import Path

import pytest
import torch

from mnistlite.config import RUN_ONLY_FIELDS, TrainConfig, changed_fields
from mnistlite.engine import bn_path as bp
from mnistlite.engine import rundir as rd
from mnistlite.engine import train
from mnistlite.errors import MnistliteError
from mnistlite.models import create_model
from mnistlite.models.fused import fused_unit, fused_unit_enabled
from mnistlite.runs.seeds import CONSISTENCY_JSON, run_seeds

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


def cfg(**kw):
    return TrainConfig.for_model(kw.pop("model", "mnistlite_flagship"), **kw)


def fake(fused_ms, torch_ms):
    return lambda *a, **k: bp.Calibration(fused_ms, torch_ms, 15)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLITE_CACHE_DIR", str(tmp_path / "cache"))


def test_the_rule_takes_torchs_layers_only_where_clearly_faster():
    # The AMX Xeon's flagship figures (docs/performance.md): 1 thread torch's layers, 2 threads the unit.
    assert bp.resolve(cfg(), CPU, calibrate_fn=fake(37.07, 31.81)).path == "torch"
    assert bp.resolve(cfg(), CPU, calibrate_fn=fake(22.97, 28.50)).path == "fused"
    # Within MIN_SPEEDUP the unit stays: a few percent is the noise of a short timing.
    assert bp.resolve(cfg(), CPU, calibrate_fn=fake(10.0 * (bp.MIN_SPEEDUP - 0.01), 10.0)).path == "fused"
    d = bp.resolve(cfg(), CPU, calibrate_fn=fake(37.07, 31.81))
    assert "37.1 ms" in d.reason and "31.8 ms" in d.reason and d.line.startswith("BatchNorm-ReLU: torch (auto: ")


def test_asked_paths_and_where_the_unit_cannot_run():
    never = lambda *a, **k: pytest.fail("no calibration for an explicit path")  # noqa: E731
    assert bp.resolve(cfg(bn_fusion="torch"), CPU, calibrate_fn=never) == bp.Decision("torch", "asked")
    assert bp.resolve(cfg(bn_fusion="fused"), CPU, calibrate_fn=never).path == "fused"
    cuda = types.SimpleNamespace(type="cuda")
    assert bp.resolve(cfg(), cuda, calibrate_fn=never).path == "torch"
    assert bp.resolve(cfg(channels_last=False), CPU, calibrate_fn=never).path == "torch"
    # A resumed run keeps its path; one saved before the field ran on the unit.
    assert bp.for_run(cfg(), CPU, resumed={"bn_fusion": "torch"}).path == "torch"
    assert bp.for_run(cfg(), CPU, resumed={}).path == "fused"


def test_the_reason_names_how_the_unit_computes():
    """The log line and result.json say whether the unit ran its compiled loops or its torch ops."""
    from mnistlite.models import bn_kernels

    never = lambda *a, **k: pytest.fail("no calibration for an explicit path")  # noqa: E731
    fused = cfg(bn_fusion="fused", precision="fp32")
    kind = "compiled loops" if bn_kernels.available() else "torch ops ("
    assert f"the unit as {kind}" in bp.resolve(fused, CPU, calibrate_fn=never).reason
    with bn_kernels.switched_off():
        assert bp.resolve(fused, CPU, calibrate_fn=never).reason.endswith("the unit as torch ops (switched off)")
    assert f"the unit as {kind}" in bp.resolve(fused.replace(precision="bf16"), CPU, calibrate_fn=never).reason
    assert bp.resolve(cfg(bn_fusion="torch"), CPU, calibrate_fn=never).reason == "asked"  # no unit, no kind


def test_bad_values_are_one_line_errors():
    with pytest.raises(MnistliteError, match="--bn-fusion must be auto, fused or torch"):
        cfg(bn_fusion="fast")
    from mnistlite.cli.common import Parser, add_config_flags

    p = Parser(prog="mnistlite train")
    add_config_flags(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--bn-fusion", "fast"])
    assert e.value.code == 2
    assert p.parse_args(["--bn-fusion", "torch"]).bn_fusion == "torch"


def test_the_switch_gives_the_same_step_up_to_rounding():
    """Why bn_fusion is run-only: both paths draw the same dropout positions from the same RNG
    calls and compute the same BatchNorm, so outputs and gradients agree to float rounding."""
    grads, states = {}, {}
    for enabled in (True, False):
        torch.manual_seed(0)
        model = create_model("mnistlite_flagship").to(memory_format=torch.channels_last).train()
        x = torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        with fused_unit(enabled):
            loss = model(x).square().mean()
        loss.backward()
        grads[enabled] = [p.grad.clone() for p in model.parameters()]
        states[enabled] = (torch.get_rng_state(), [b.clone() for b in model.buffers()])
    assert fused_unit_enabled()  # restored
    assert torch.equal(states[True][0], states[False][0])  # the same random draws
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    for a, b in zip(states[True][1], states[False][1]):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)


def test_calibration_is_cached_per_machine_and_precision(tmp_path):
    c = cfg(model="mnistlite_2k", batch_size=8, precision="fp32")
    state = torch.get_rng_state()
    first = bp.calibrate(c, CPU, rounds=1, steps=1)
    assert torch.equal(torch.get_rng_state(), state) and fused_unit_enabled()
    assert first.fused_ms > 0 and first.torch_ms > 0 and not first.cached
    path = tmp_path / "cache" / bp.CACHE_FILE
    (key,) = json.loads(path.read_text())["entries"]
    assert "mnistlite_2k" in key and "batch 8" in key and f"threads{torch.get_num_threads()}" in key
    assert key.endswith(f"|fp32|{bp.unit_kind()}")  # the unit's kind: its loops and its torch ops time apart
    again = bp.calibrate(c, CPU, rounds=1, steps=1)
    assert again.cached and again.fused_ms == pytest.approx(first.fused_ms, rel=1e-3)
    assert not bp.calibrate(c.replace(precision="bf16"), CPU, rounds=1, steps=1).cached
    for junk in ("{not json", json.dumps({"format": 1, "entries": {key: {"fused_ms": "x"}}}), "[]"):
        path.write_text(junk)
        assert not bp.calibrate(c, CPU, rounds=1, steps=1).cached


def test_a_run_records_its_path_and_is_the_same_run_on_either(mnist_small, tmp_path, monkeypatch):
    monkeypatch.setattr(bp, "calibrate", fake(37.07, 31.81))
    out = tmp_path / "run"
    c = cfg(model="mnistlite_2k", epochs=1, limit_train=300, ema=0.0)
    train(c, run_dir=out, data=mnist_small.subset_train(300), progress=False, quiet=True)
    saved = json.loads((out / rd.CONFIG).read_text())
    assert saved["bn_fusion"] == "torch"  # resolved: never "auto" in a run directory
    result = json.loads((out / rd.RESULT).read_text())
    assert result["bn_fusion"] == "torch" and result["bn_fusion_reason"].startswith("auto: calibrated")
    assert "BatchNorm-ReLU: torch (auto: " in (out / rd.LOG).read_text()
    assert "bn_fusion" in RUN_ONLY_FIELDS
    for want in ("auto", "fused", "torch"):
        assert changed_fields(saved, c.replace(bn_fusion=want)) == []
    old = {k: v for k, v in saved.items() if k != "bn_fusion"}  # saved before the field
    assert changed_fields(old, c) == [] and TrainConfig.from_dict(old).bn_fusion == "auto"


def test_a_committed_sweep_reaggregates_without_training(tmp_path, monkeypatch):
    """docs/results folders saved before bn_fusion are still the same runs: nothing trains.

    The 3k ladder runs: the flagship's and the frontier's were retrained after their recipes changed."""
    src = REPO / "docs" / "results" / "ladder" / "mnistlite_3k"
    assert "bn_fusion" not in (src / "seed1" / rd.CONFIG).read_text()  # what this test is about
    out = tmp_path / "mnistlite_3k"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.png", "model.pt"))
    monkeypatch.setattr("mnistlite.runs.plan.train_run", lambda *a, **k: pytest.fail("must not train"))
    monkeypatch.setattr("mnistlite.runs.seeds.plot_consistency", lambda *a: None)
    base = TrainConfig.for_model("mnistlite_3k")
    agg = run_seeds(base, [1, 2, 3, 4, 5], out, jobs="auto", echo=lambda s: None)
    committed = json.loads((src / CONSISTENCY_JSON).read_text())
    assert agg["final_test_acc"] == committed["final_test_acc"] and agg["config"] == committed["config"]

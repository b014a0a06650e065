"""The fast path's one switch (engine/bn_path.py): the committed rule, the record, the same-run rule."""

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
from mnistlite.fast import kernels
from mnistlite.fast.apply import accelerate
from mnistlite.models import config_for, create_model
from mnistlite.runs.seeds import CONSISTENCY_JSON, run_seeds

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


def cfg(**kw):
    return config_for(kw.pop("model", "mnistlite_flagship"), **kw)


def test_the_rule_follows_the_committed_figures_per_cpu_kind(monkeypatch):
    assert (
        bp.rule(("AVX512", 2)).path == "fused" and "bench_model3_cpu_amx2_loops.json" in bp.rule(("AVX512", 2)).reason
    )
    assert bp.rule(("NEWISA", 3)).reason.startswith("auto: not measured on NEWISA at 3 thread(s)")
    assert bp.rule(("NEWISA", 3)).path == "fused"
    # A kind where torch's layers measured faster takes them.
    monkeypatch.setitem(bp.MEASURED, ("NEWISA", 1), (900, 1000, "somewhere.json"))
    d = bp.rule(("NEWISA", 1))
    assert d.path == "torch" and "fused 900, torch 1,000 img/s (somewhere.json)" in d.reason
    monkeypatch.setattr(bp, "cpu_kind", lambda threads: ("NEWISA", 1))
    if kernels.available():
        assert bp.resolve(cfg(), CPU).path == "torch"
        assert bp.resolve(cfg(bn_fusion="fused"), CPU) == bp.Decision("fused", "asked")


def test_asked_paths_and_where_the_loops_cannot_run(monkeypatch):
    assert bp.resolve(cfg(bn_fusion="torch"), CPU) == bp.Decision("torch", "asked")
    cuda = types.SimpleNamespace(type="cuda")
    assert bp.resolve(cfg(), cuda).path == "torch" and "CPU only" in bp.resolve(cfg(), cuda).reason
    assert bp.resolve(cfg(bn_fusion="fused", channels_last=False), CPU).path == "torch"
    # Without numba every setting takes torch's layers, and says why.
    monkeypatch.setitem(kernels._STATE, "ok", False)
    monkeypatch.setitem(kernels._STATE, "why_not", "numba is not installed (test)")
    d = bp.resolve(cfg(bn_fusion="fused"), CPU)
    assert d == bp.Decision("torch", "fused, but numba is not installed (test): torch's layers")
    model, line = accelerate(create_model("mnistlite8k_model3"))
    assert line == "Fast path: off, torch's layers: numba is not installed (test); 6 Dropout with the sparse mask"
    assert type(model).__name__ == "Sequential"


def test_a_resumed_run_keeps_its_path():
    assert bp.for_run(cfg(), CPU, resumed={"bn_fusion": "torch"}) == bp.Decision("torch", "as the run started")
    if kernels.available():  # one saved before the field ran on the unit
        assert bp.for_run(cfg(bn_fusion="torch"), CPU, resumed={}) == bp.Decision("fused", "as the run started")


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
    for fused in (True, False):
        torch.manual_seed(0)
        model, _ = accelerate(create_model("mnistlite_flagship"), fused)
        model = model.to(memory_format=torch.channels_last).train()
        x = torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        loss = model(x).square().mean()
        loss.backward()
        grads[fused] = [p.grad.clone() for p in model.parameters()]
        states[fused] = (torch.get_rng_state(), [b.clone() for b in model.buffers()])
    assert torch.equal(states[True][0], states[False][0])  # the same random draws
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    for a, b in zip(states[True][1], states[False][1]):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_run_records_its_path_and_is_the_same_run_on_either(mnist_small, tmp_path, monkeypatch):
    monkeypatch.setattr(bp, "rule", lambda kind: bp.Decision("torch", "auto: measured (test)"))
    out = tmp_path / "run"
    c = cfg(model="mnistlite_3k", epochs=1, limit_train=300, ema=0.0)
    train(c, run_dir=out, data=mnist_small.subset_train(300), progress=False, quiet=True)
    saved = json.loads((out / rd.CONFIG).read_text())
    assert saved["bn_fusion"] == "torch"  # resolved: never "auto" in a run directory
    result = json.loads((out / rd.RESULT).read_text())
    assert result["bn_fusion"] == "torch" and result["bn_fusion_reason"] == "auto: measured (test)"
    log = (out / rd.LOG).read_text()
    assert "BatchNorm-ReLU: torch (auto: measured (test))" in log and "Fast path: off, torch's layers" in log
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
    base = config_for("mnistlite_3k")
    agg = run_seeds(base, [1, 2, 3, 4, 5], out, jobs="auto", echo=lambda s: None)
    committed = json.loads((src / CONSISTENCY_JSON).read_text())
    assert agg["final_test_acc"] == committed["final_test_acc"] and agg["config"] == committed["config"]

"""Precision by machine (engine/precision.py): the rule, its record in a run, and the same-run matching."""

import json
import types

import pytest
import torch

from mnistlite.config import TrainConfig, changed_fields
from mnistlite.engine import precision as pr
from mnistlite.engine import rundir as rd
from mnistlite.engine import train
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for

CPU = torch.device("cpu")
CUDA = types.SimpleNamespace(type="cuda")  # resolve() reads only .type: no GPU needed


def cfg(**kw):
    return config_for(kw.pop("model", "mnistlite_flagship"), **kw)


@pytest.fixture
def units(monkeypatch):
    """Pretend the CPU has (or lacks) bf16 matrix units."""

    def set_units(names):
        monkeypatch.setattr(pr, "bf16_units", lambda: list(names))

    return set_units


def test_explicit_precisions_and_the_deprecated_flag(units):
    units(["amx_bf16", "avx512_bf16"])
    assert pr.resolve(cfg(precision="fp32"), CPU).precision == "fp32"
    assert pr.resolve(cfg(precision="bf16"), CPU).precision == "bf16"
    old = pr.resolve(cfg(bf16=True), CPU)
    assert old.precision == "bf16" and "deprecated" in old.reason
    # bf16=true wins over any precision, as an old config.json meant it.
    assert pr.resolve(cfg(bf16=True, precision="fp32"), CPU).precision == "bf16"
    units([])
    assert "emulated" in pr.resolve(cfg(precision="bf16"), CPU).reason


def test_auto_is_fp32_until_bf16_is_cleared_for_accuracy(units, monkeypatch):
    units(["amx_bf16"])
    d = pr.resolve(cfg(), CPU)
    assert d.precision == "fp32" and "not cleared for accuracy" in d.reason and "AMX" in d.reason
    assert d.line.startswith("precision: fp32 (auto: ")
    monkeypatch.setitem(pr.ACCURACY_CLEARED, "cpu", True)
    d = pr.resolve(cfg(), CPU)
    assert d.precision == "bf16" and "cleared for accuracy" in d.reason
    units([])  # no bf16 units: fp32
    assert pr.resolve(cfg(), CPU).precision == "fp32"


def test_auto_on_cuda_stays_fp32():
    d = pr.resolve(cfg(), CUDA)
    assert d.precision == "fp32" and "cuda" in d.reason
    assert pr.resolve(cfg(precision="bf16"), CUDA).precision == "bf16"


def test_config_field_is_checked_and_flag_has_choices():
    with pytest.raises(MnistliteError, match="--precision must be auto, fp32 or bf16"):
        cfg(precision="fp16")
    from mnistlite.cli.common import Parser, add_config_flags

    p = Parser(prog="x")
    add_config_flags(p)
    assert p.parse_args(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "half"])


def _saved(c: TrainConfig, **edit):
    """A config.json as written: `precision` resolved; edit=None drops a field (an old file)."""
    d = c.to_dict()
    for k, v in edit.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


def test_same_run_rule(monkeypatch):
    new = cfg()  # precision auto
    # A config saved before the field existed ran fp32 (or bf16 with bf16=true).
    legacy_fp32 = _saved(new, precision=None)
    legacy_bf16 = _saved(new, precision=None, bf16=True)
    assert changed_fields(legacy_fp32, new) == []
    assert changed_fields(legacy_fp32, new.replace(precision="fp32")) == []
    assert changed_fields(legacy_fp32, new.replace(precision="bf16")) == ["precision"]
    assert changed_fields(legacy_bf16, new.replace(precision="bf16")) == []
    assert changed_fields(legacy_bf16, new.replace(bf16=True)) == []
    # auto matches only what auto may pick: fp32 until bf16 is cleared for accuracy.
    assert changed_fields(legacy_bf16, new) == ["precision"]
    ran_bf16 = _saved(new, precision="bf16")
    ran_fp32 = _saved(new, precision="fp32")
    assert changed_fields(ran_fp32, new) == []
    assert changed_fields(ran_bf16, new) == ["precision"]
    assert changed_fields(ran_bf16, new.replace(precision="fp32")) == ["precision"]
    assert changed_fields(ran_bf16, new.replace(bf16=True)) == []
    monkeypatch.setitem(pr.ACCURACY_CLEARED, "cpu", True)
    assert changed_fields(ran_bf16, new) == [] and changed_fields(ran_fp32, new) == []
    # A planned config never trained (still auto) matches what auto may pick.
    planned = new.to_dict()
    assert changed_fields(planned, new) == [] and changed_fields(planned, new.replace(precision="fp32")) == []
    monkeypatch.setitem(pr.ACCURACY_CLEARED, "cpu", False)
    assert changed_fields(planned, new.replace(precision="bf16")) == ["precision"]
    # An old config.json still loads.
    assert TrainConfig.from_dict(legacy_bf16).bf16 is True


@pytest.mark.slow
def test_a_run_records_the_resolved_precision(mnist_small, tmp_path, units):
    units(["amx_bf16"])
    out = tmp_path / "run"
    data = mnist_small.subset_train(500)
    c = cfg(epochs=1, limit_train=500, ema=0.0)
    train(c, run_dir=out, data=data, progress=False, quiet=True)
    saved = json.loads((out / rd.CONFIG).read_text())
    assert saved["precision"] == "fp32"  # auto, resolved: never "auto" in a run directory
    result = json.loads((out / rd.RESULT).read_text())
    assert result["precision"] == "fp32" and result["precision_reason"].startswith("auto:")
    assert "precision: fp32 (auto: " in (out / rd.LOG).read_text()
    assert changed_fields(saved, c) == []  # the sweep that asked for auto finds it done
    res = train(c.replace(precision="bf16"), data=data, progress=False, quiet=True)
    assert res.config.precision == "bf16" and res.to_dict()["precision"] == "bf16"

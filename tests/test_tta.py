"""engine/tta.py and `mnistlite evaluate`: small-shift test-time augmentation, reported beside the plain figure."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlite.cli import main
from mnistlite.data import Split
from mnistlite.engine.tta import score, shift, views
from mnistlite.models.pretrained import catalogue

ROOT = Path(__file__).resolve().parents[1]


def test_views_are_the_identity_and_four_directions_per_pixel():
    assert views(1) == [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    v = views(3)
    assert len(v) == 13 == len(set(v)) and max(max(abs(a), abs(b)) for a, b in v) == 3


def test_shift_moves_content_and_fills_with_the_background():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    right = shift(x, 1, 0, fill=-1.0)
    assert right[0, 0, :, 0].tolist() == [-1.0] * 4 and torch.equal(right[..., 1:], x[..., :3])
    up = shift(x, 0, -2, fill=-1.0)
    assert torch.equal(up[..., :2, :], x[..., 2:, :]) and up[..., 2:, :].eq(-1.0).all()
    assert shift(x, 0, 0, fill=-1.0) is x
    back = shift(shift(x, -1, 1, fill=0.0), 1, -1, fill=0.0)  # the interior survives a round trip
    assert torch.equal(back[..., :3, 1:], x[..., :3, 1:])


def test_a_shift_invariant_model_gains_nothing():
    """Logits from the image's total ink: unchanged by shifts that keep the digit inside."""
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 10:18, 10:18] = torch.rand(64, 1, 8, 8)
    labels = torch.randint(0, 10, (64,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1, bias=False), nn.Linear(1, 10))
    nn.init.ones_(model[1].weight)
    s = score(model, Split(images, labels), max_shift=2, fill=0.0, batch_size=16)
    assert s.views == 9 and s.tta == pytest.approx(s.plain)


@pytest.mark.slow
def test_evaluate_a_run_plain_matches_a_fresh_score(flagship_run, data_root, tmp_path, capsys):
    from mnistlite.data import load_dataset
    from mnistlite.deploy.predict import load_run
    from mnistlite.engine.evaluation import evaluate

    out = tmp_path / "tta.json"
    argv = ["evaluate", str(flagship_run), "--data-dir", str(data_root), "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == "test" and doc["views"] == 5 and doc["summary"]["n"] == 1
    test = load_dataset("mnist", data_dir=str(data_root), download=False).test
    _, plain = evaluate(load_run(flagship_run).model, test, 1000)
    assert doc["runs"][0]["plain"] == pytest.approx(plain)
    assert "TTA (5 views)" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_scores_in_the_runs_own_layout(flagship_run, data_root, monkeypatch):
    """channels_last, as the run trained and was judged (so the inference loops apply on a CPU)."""
    import mnistlite.engine.tta as tta

    seen = []
    real = tta.score

    def spy(model, *args, **kwargs):
        w = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)
        seen.append(w.is_contiguous(memory_format=torch.channels_last))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(tta, "score", spy)
    assert main(["evaluate", str(flagship_run), "--data-dir", str(data_root)]) == 0
    assert seen == [True]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "val"], "trained without a validation split"),
        (["--tta-shift", "9"], "--tta-shift must be 1 to 4"),
        (["--json", "/nonexistent-folder/x.json"], "folder /nonexistent-folder does not exist"),
    ],
)
def test_evaluate_refuses_in_one_line(flagship_run, data_root, capsys, extra, message):
    assert main(["evaluate", str(flagship_run), "--data-dir", str(data_root), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_evaluate_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nor a folder of seed<k>/ runs" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(catalogue()))
def test_evaluate_the_shipped_weights_by_name(name, data_root, capsys):
    """Shipped weights are seed 1 of committed runs: the bytes and the plain figure are that run's."""
    from mnistlite.models.pretrained import pretrained_file

    path, meta = pretrained_file(name)
    assert path.read_bytes() == (ROOT / meta["run"] / "model.pt").read_bytes()
    assert main(["evaluate", name, "--data-dir", str(data_root)]) == 0
    assert f"test plain {meta['final_test_acc']:.2f}%" in capsys.readouterr().out


def _as_validation_run(flagship_run, tmp_path):
    """A copy of the shared run whose config says it held out a validation split."""
    import shutil

    run = tmp_path / "valrun"
    shutil.copytree(flagship_run, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "val_size": 2000}))
    return run


def test_evaluate_keeps_a_validation_runs_test_set_sealed(flagship_run, data_root, tmp_path, capsys, monkeypatch):
    import mnistlite.engine.tta as tta

    run = _as_validation_run(flagship_run, tmp_path)
    monkeypatch.setattr(tta, "score", lambda *a, **k: pytest.fail("scored a sealed test set"))
    for extra in ([], ["--split", "test"]):  # test is the default split
        assert main(["evaluate", str(run), "--data-dir", str(data_root), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "its test set is sealed" in err and "--read-test" in err
    # A full-train run beside it does not lift the seal of the other.
    assert main(["evaluate", str(flagship_run), str(run), "--data-dir", str(data_root)]) == 2


@pytest.mark.slow
def test_evaluate_reads_a_sealed_test_set_only_when_asked(flagship_run, data_root, tmp_path, capsys):
    run = _as_validation_run(flagship_run, tmp_path)
    assert main(["evaluate", str(run), "--data-dir", str(data_root), "--split", "test", "--read-test"]) == 0
    assert ": test plain " in capsys.readouterr().out

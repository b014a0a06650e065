"""runs/plan.py: the one same-run rule and the one stale-folder policy, without training."""

import pytest

from mnistlite.engine import rundir as rd
from mnistlite.errors import MnistliteError
from mnistlite.models import config_for
from mnistlite.runs import plan


def finished(run, cfg, result=True, checkpoint=False):
    run.mkdir(parents=True)
    rd.write_json(run / rd.CONFIG, cfg.to_dict())
    if result:
        rd.write_json(run / rd.RESULT, {"final_test_acc": 99.0})
    if checkpoint:
        (run / rd.CHECKPOINT).write_bytes(b"x")


@pytest.fixture
def cfg():
    return config_for("mnistlite_3k", epochs=2)


def test_run_only_fields_do_not_make_another_run(tmp_path, cfg):
    finished(tmp_path / "r", cfg)
    other = cfg.replace(threads=1, device="cpu", data_dir="/x", eval_batch_size=7, channels_last=False)
    assert plan.run_state(tmp_path / "r", other) == ("done", "")
    status, detail = plan.run_state(tmp_path / "r", cfg.replace(epochs=3))
    assert status == "changed" and detail == "epochs 2 -> 3"


def test_precision_is_part_of_the_run(tmp_path, cfg, monkeypatch):
    """bf16 changes the numbers, so it is a recipe field, not a run-only one: a folder trained
    in one precision is another run for the other; `auto` stands for what auto may pick."""
    from mnistlite.engine import precision as pr

    monkeypatch.setitem(pr.ACCURACY_CLEARED, "cpu", False)
    finished(tmp_path / "fp32", cfg.replace(precision="fp32"))  # as a run saves it: resolved
    finished(tmp_path / "bf16", cfg.replace(precision="bf16"))
    assert plan.run_state(tmp_path / "fp32", cfg.replace(precision="fp32")) == ("done", "")
    assert plan.run_state(tmp_path / "fp32", cfg) == ("done", "")  # auto is fp32 until bf16 is cleared
    assert plan.run_state(tmp_path / "bf16", cfg.replace(precision="fp32")) == ("changed", "precision 'bf16' -> 'fp32'")
    assert plan.run_state(tmp_path / "fp32", cfg.replace(precision="bf16"))[0] == "changed"
    assert plan.run_state(tmp_path / "bf16", cfg)[0] == "changed"
    monkeypatch.setitem(pr.ACCURACY_CLEARED, "cpu", True)  # once cleared, auto may have picked either
    assert plan.run_state(tmp_path / "bf16", cfg) == ("done", "")
    assert plan.run_state(tmp_path / "bf16", cfg.replace(precision="fp32"))[0] == "changed"


def test_states(tmp_path, cfg):
    assert plan.run_state(tmp_path / "none", cfg)[0] == "new"
    finished(tmp_path / "ck", cfg, result=False, checkpoint=True)
    assert plan.run_state(tmp_path / "ck", cfg)[0] == "resume"
    finished(tmp_path / "bare", cfg, result=False)
    assert plan.run_state(tmp_path / "bare", cfg)[0] == "restart"


def test_stale_folders_are_moved_aside_never_deleted(tmp_path, cfg):
    run = tmp_path / "seed1"
    finished(run, cfg)
    aside = plan.move_aside(run)
    assert not run.exists() and aside.name.startswith("seed1.old-") and (aside / rd.RESULT).is_file()
    finished(run, cfg)
    assert plan.move_aside(run) != aside  # a second one in the same second gets its own name


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, cfg):
    run = tmp_path / "seed1"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(MnistliteError, match="not a run's"):
        plan.move_aside(run)
    assert (run / "notes.txt").read_text() == "mine"


def test_threads_are_the_cores_shared_by_the_jobs(monkeypatch):
    import mnistlite.engine.device as device

    monkeypatch.setattr(device, "cpu_cores", lambda: 8)
    assert plan.threads_per_run(1) == 8 and plan.threads_per_run(3) == 2 and plan.threads_per_run(16) == 1
    assert plan.threads_per_run(4, threads=3) == 3


def test_an_interrupted_pool_worker_starts_no_further_run(monkeypatch, tmp_path, cfg):
    # The pool has already handed a worker its next run when a signal stops the current one.
    from mnistlite.engine import TrainingInterrupted

    started = []

    def fake_train(c, run_dir, **kw):
        started.append(run_dir)
        raise TrainingInterrupted("SIGINT: stopped during epoch 1")

    monkeypatch.setattr(plan, "train_run", fake_train)
    monkeypatch.setattr(plan, "_INTERRUPTED", [])
    job = (cfg.to_dict(), str(tmp_path / "a"), None, False)
    with pytest.raises(TrainingInterrupted):
        plan._pool_worker(job)
    with pytest.raises(TrainingInterrupted, match="not started"):
        plan._pool_worker((cfg.to_dict(), str(tmp_path / "b"), None, False))
    assert started == [tmp_path / "a"]


def test_a_candidate_moved_out_of_the_zoo_keeps_its_runs(tmp_path):
    """Runs saved under a candidate's bare name (before it moved to its round's file) count as done
    for the same name from that file; a registered model's runs never match a user file's namesake."""
    ref = "experiments/tuning/tiny_candidates.py:tiny2k_wide"
    want = config_for(ref, epochs=2)
    finished(tmp_path / "old", want.replace(model="tiny2k_wide", model_sha256=None))
    assert plan.run_state(tmp_path / "old", want) == ("done", "")
    finished(tmp_path / "other", want.replace(model="tiny2k_deep", model_sha256=None))
    assert plan.run_state(tmp_path / "other", want)[0] == "changed"
    zoo = config_for("mnistlite_3k", epochs=2)
    finished(tmp_path / "zoo", zoo)
    namesake = want.replace(model="my.py:mnistlite_3k")
    assert plan.run_state(tmp_path / "zoo", namesake)[0] == "changed"

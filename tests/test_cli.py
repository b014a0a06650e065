"""cli/__init__.py: the command's process-wide choice, glibc's malloc tuning (--malloc-tuning).

mallopt itself is never called here: `tune_cpu_allocator` is replaced by a
recorder in-process, and the one subprocess runs `serve`'s choice, which is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlite import cli
from mnistlite.engine import device as dev

REPO = Path(__file__).resolve().parents[1]
TRAINING = {"train", "seeds", "table", "bench", "experiment", "search", "tune"}


@pytest.fixture
def mallopt_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(dev, "tune_cpu_allocator", lambda: calls.append(1) or True)
    monkeypatch.delenv(dev.MALLOC_TUNING_ENV, raising=False)
    return calls


@pytest.mark.parametrize("command", sorted(cli.build_parser()._subparsers._group_actions[0].choices))
def test_auto_tunes_the_training_commands_only(command):
    assert cli.malloc_tuning_wanted(command) is (command in TRAINING)
    assert cli.malloc_tuning_wanted(command, "on") and not cli.malloc_tuning_wanted(command, "off")
    # The environment decides where the flag is auto; the flag wins over it.
    assert cli.malloc_tuning_wanted(command, "auto", "1") and not cli.malloc_tuning_wanted(command, "auto", "0")
    assert not cli.malloc_tuning_wanted(command, "off", "1") and cli.malloc_tuning_wanted(command, "on", "0")


def test_serving_and_deploying_leave_the_allocator_alone():
    assert not any(cli.malloc_tuning_wanted(c) for c in ("serve", "predict", "export"))


@pytest.mark.parametrize(
    "argv, want",
    [
        (["models"], "auto"),
        (["--malloc-tuning", "off", "train", "--model", "m"], "off"),
        (["train", "--model", "m", "--malloc-tuning", "on"], "on"),
        (["--malloc-tuning", "off", "serve", "run", "--malloc-tuning", "on"], "on"),  # the later one wins
    ],
)
def test_the_flag_parses_before_or_after_the_command(argv, want):
    assert cli.build_parser().parse_args(argv).malloc_tuning == want


def test_a_bad_choice_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--malloc-tuning", "maybe", "models"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_main_applies_the_choice(mallopt_calls, capsys):
    assert cli.main(["models"]) == 0  # not a training command: auto is off
    assert mallopt_calls == []
    assert cli.main(["models", "--malloc-tuning", "on"]) == 0
    assert mallopt_calls == [1]
    assert dev.MALLOC_TUNING_ENV not in os.environ  # put back for in-process callers of main()


def test_the_choice_reaches_spawned_workers_through_the_environment(mallopt_calls, monkeypatch):
    with cli.allocator_choice("train") as on:
        assert on and os.environ[dev.MALLOC_TUNING_ENV] == "1"
    with cli.allocator_choice("train", "off") as on:
        assert not on and os.environ[dev.MALLOC_TUNING_ENV] == "0"
    with cli.allocator_choice("serve") as on:
        assert not on and os.environ[dev.MALLOC_TUNING_ENV] == "0"
    monkeypatch.setenv(dev.MALLOC_TUNING_ENV, "1")
    with cli.allocator_choice("serve") as on:
        assert on
    assert os.environ[dev.MALLOC_TUNING_ENV] == "1"
    assert mallopt_calls == [1, 1]


def test_help_documents_the_flag_and_the_variable():
    text = cli.build_parser().format_help()
    assert "--malloc-tuning" in text and "MNISTLITE_MALLOC_TUNING" in text


@pytest.mark.slow
def test_serve_process_does_not_call_mallopt():
    """A real `python -m mnistlite` process: the CLI's choice, not an import side effect."""
    code = (
        "import mnistlite.engine.device as d, mnistlite.cli as c\n"
        "with c.allocator_choice('serve'): pass\n"
        "import mnistlite.engine\n"
        "print(d._ALLOCATOR_TUNED)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("MNISTLITE_MALLOC_TUNING", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["predict", "serve", "export"])
def test_help_names_every_model_with_shipped_weights(command, capsys):
    """The help is built from pretrained.json, so a newly shipped model is listed without editing it."""
    from mnistlite.models.pretrained import catalogue

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in catalogue())


@pytest.mark.slow
def test_models_lists_the_supported_zoo_and_all_adds_the_candidates(capsys, monkeypatch):
    """Tuning candidates are listed only with --all, from the files experiments/ names, with their rounds."""
    import json

    monkeypatch.chdir(REPO)
    assert cli.main(["models"]) == 0
    plain = capsys.readouterr().out
    assert "mnistlite_sep8k" in plain and "tiny1k_sep" in plain
    assert "tiny2k_fact" not in plain and "candidate" not in plain
    assert cli.main(["models", "--all", "--json"]) == 0
    rows = {r["name"].rpartition(":")[2]: r for r in json.loads(capsys.readouterr().out)}
    assert "candidate_of" not in rows["mnistlite_sep8k"]
    assert rows["tiny2k_fact"]["name"] == "experiments/tuning/tiny_candidates.py:tiny2k_fact"
    assert rows["tiny2k_fact"]["candidate_of"] == ["experiments/tuning/tiny_round1.toml"]
    assert rows["tiny2k_fact"]["params"] == 1_834
    assert cli.main(["models", "--all", "--tag", "under1k"]) == 0
    out = capsys.readouterr().out
    assert "tiny1k_early" in out and "candidate of experiments/tuning/tiny_round5.toml" in out
    assert "tiny2k_fact" not in out

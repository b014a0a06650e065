"""docs/results stays small: every clone pays for what is tracked there.

A committed run keeps its config, result, metrics, log and consistency files;
plots stay only where a page shows them, because `mnistlite report` redraws
the rest from metrics.csv (checked below on a committed run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mnistlite.cli import main
from mnistlite.engine import rundir as rd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
LIMIT_BYTES = 15_000_000


def tracked_files(folder: Path) -> list[Path]:
    """The files git tracks under `folder`; skips the test outside a git checkout (an sdist, a copy)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    r = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--", str(folder.relative_to(REPO))],
        capture_output=True,
    )
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / p for p in r.stdout.decode().split("\0") if p]


def test_tracked_results_stay_under_15_mb():
    files = tracked_files(RESULTS)
    if not files:
        pytest.skip("docs/results is not tracked here")
    # lstat: a linked seed folder counts as its link, as git stores it
    sizes = {p: p.lstat().st_size for p in files if p.is_symlink() or p.is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:5]
    assert total <= LIMIT_BYTES, (
        f"docs/results tracks {total / 1e6:.1f} MB, over {LIMIT_BYTES / 1e6:.0f} MB; drop plots no page shows "
        f"(`mnistlite report DIR` redraws them) and model.pt no documented command needs. Largest: "
        + ", ".join(f"{p.relative_to(REPO)} ({sizes[p] / 1e3:.0f} kB)" for p in biggest)
    )


def test_report_redraws_a_committed_runs_curves(tmp_path, capsys):
    src = RESULTS / "ladder" / "mnistlite_3k" / "seed1"
    run = tmp_path / "seed1"
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("*.png", "model.pt"))
    assert not (run / rd.CURVES).exists()
    assert main(["report", str(run)]) == 0
    assert (run / rd.CURVES).stat().st_size > 10_000  # a drawn figure, not an empty file
    assert "](seed1/curves.png)" in (tmp_path / "report.md").read_text()

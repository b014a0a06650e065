"""The public anchors: one committed file (reports/anchors.json, linked from docs/results) names each
anchor's source, and the leaderboard's table and plot read their figures from it."""

from __future__ import annotations

import json
from pathlib import Path

from mnistlite.reports import leaderboard

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"name", "repository", "file", "source", "params", "test_acc", "epochs", "runs", "one_run"}
FIELDS |= {"selected_on_test", "verified"}


def test_every_anchor_names_its_source():
    anchors = leaderboard.load_anchors()
    assert anchors and all(FIELDS <= set(a) for a in anchors)
    assert all(a["repository"] and a["file"] and a["source"] and a["verified"] for a in anchors)
    assert all(isinstance(a["one_run"], bool) for a in anchors)
    # Those from a seed README cite it by its file name in the seeds folder.
    assert any(a["source"].startswith("seeds/") and a["source"].endswith(".txt") for a in anchors)


def test_the_docs_copy_is_the_packaged_file():
    assert json.loads((ROOT / "docs/results/anchors.json").read_text()) == json.loads(
        leaderboard.ANCHORS_FILE.read_text()
    )


def test_the_table_shows_the_file():
    table = leaderboard.anchors_table()
    rows = table.splitlines()[2:]
    anchors = leaderboard.load_anchors()
    assert len(rows) == len(anchors)
    for row, a in zip(rows, anchors, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells == [
            a["name"],
            f"{a['params']:,}",
            f"{a['test_acc']:.2f}",
            a["epochs"],
            a["runs"],
            a["selected_on_test"],
        ]
    # The committed ladder shows the same table.
    assert table in (ROOT / "docs/results/ladder.md").read_text()

"""`mnistlite compare`: finished runs side by side, as a table and one overlay plot; two seeds
folders (consistency.json) also as a paired comparison over their common seeds."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine import rundir as rd
from ..errors import MnistliteError
from ..runs.holding import paired
from ..runs.seeds import CONSISTENCY_JSON
from .figures import plot_test_overlay
from .markdown import epoch_list
from .runs import RunRecord, is_run_dir, load_run, split_of
from .sections import EXPERIMENT_JSON, is_experiment_dir, sections_from_experiment

ACCS = ("best", "final", "last3_min")  # the headline accuracies a row shows, in order
SPLIT_NAMES = {"test": "test", "val": "validation"}


def is_seeds_dir(path: Path) -> bool:
    return (Path(path) / CONSISTENCY_JSON).is_file()


def read_consistency(path: Path) -> dict[str, Any]:
    agg = rd.read_json(Path(path) / CONSISTENCY_JSON)
    if not isinstance(agg, dict) or not isinstance(agg.get("per_seed"), dict):
        raise MnistliteError(f"{Path(path) / CONSISTENCY_JSON}: not a seeds aggregate")
    return agg


def expand_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories, with an experiment directory or a seeds folder standing for all its runs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif is_seeds_dir(p):
            out += [p / info["run_dir"] for info in read_consistency(p)["per_seed"].values()]
        elif is_experiment_dir(p):
            out += [r.path for s in sections_from_experiment(p)[1] for r in s.runs]
        elif not p.exists():
            raise MnistliteError(f"{p}: no such directory")
        else:
            raise MnistliteError(
                f"{p}: neither a run directory ({rd.CONFIG}), a seeds folder ({CONSISTENCY_JSON}) "
                f"nor an experiment directory ({EXPERIMENT_JSON})"
            )
    return out


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """The shortest path suffixes that tell the runs apart."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    # "seed1" alone says little: experiment runs get their step folder too.
    start = 2 if parts and all(re.fullmatch(r"seed\d+", x[-1]) for x in parts) else 1
    for k in range(start, max((len(x) for x in parts), default=1) + 1):
        labels = ["/".join(x[-k:]) for x in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def compare_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run, its accuracies keyed by the split they are on (`best_val_acc` for a sealed run)."""
    rows = []
    for label, r in zip(unique_labels([r.path for r in runs]), runs):
        s, sp = r.headline, r.split
        head = dict(
            run=label, path=str(r.path), model=r.model, seed=r.seed, split=sp, params=r.params, epochs=len(r.rows)
        )
        accs = {f"{k}_{sp}_acc": s.get(f"{k}_test_acc") for k in ACCS}
        tail = dict(epochs_at_target=s.get("epochs_at_target", []), wall_seconds=r.wall_seconds, complete=r.complete)
        rows.append({**head, **accs, **tail})
    return rows


def format_compare(rows: Sequence[dict[str, Any]]) -> str:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    sp = rows[0]["split"] if rows else "test"  # compare() never mixes splits
    table = [["run", "model", "params", f"best {sp}", f"final {sp}", "last-3 min", f"epochs >= {rd.TARGET}", "wall s"]]
    for r in rows:
        run = r["run"] + ("" if r["complete"] else " (incomplete)")
        at = r["epochs_at_target"]
        accs = [f(r[f"{k}_{sp}_acc"], ".2f") for k in ACCS]
        at_text = f"{len(at)}" + (f" ({epoch_list(at)})" if at else "")
        table.append([run, r["model"], f(r["params"], ","), *accs, at_text, f(r["wall_seconds"], ".1f")])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    left = {0, 1, 6}
    return "\n".join(
        "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in table
    )


def paired_seeds(a: Path, b: Path) -> dict[str, Any]:
    """Seeds folder A against seeds folder B: the final test accuracy, paired seed by seed."""
    aggs = [read_consistency(a), read_consistency(b)]
    splits = {str(agg.get("split", "test")) for agg in aggs}
    if len(splits) > 1:
        raise MnistliteError(f"{a} and {b}: one was scored on the test set, the other on validation; nothing to pair")
    split = splits.pop()
    finals = [{int(k): v[f"final_{split}_acc"] for k, v in agg["per_seed"].items()} for agg in aggs]
    try:
        out = paired(finals[0], finals[1])
    except ValueError:
        raise MnistliteError(f"{a} and {b}: no seed in common, nothing to pair") from None
    sizes = {agg.get("test_set_sampling", {}).get("n_test") for agg in aggs}
    n_test = sizes.pop() if len(sizes) == 1 else None
    models = {"model_a": aggs[0].get("model"), "model_b": aggs[1].get("model")}
    images = None if n_test is None else out["mean_diff"] / 100 * n_test
    return {"a": str(a), "b": str(b), **models, **out, "split": split, "n_test": n_test, "mean_diff_images": images}


def format_paired(p: dict[str, Any]) -> str:
    lines = [
        f"paired over {p['n']} common seed(s), final {SPLIT_NAMES[p.get('split', 'test')]} accuracy, "
        f"A = {p['a']} ({p['model_a']}), B = {p['b']} ({p['model_b']})",
        "seed       A       B   A - B",
    ]
    lines += [f"{seed:>4}  {r['a']:6.2f}  {r['b']:6.2f}  {r['diff']:+6.2f}" for seed, r in p["per_seed"].items()]
    se = "-" if p["se_diff"] is None else f"{p['se_diff']:.3f}"
    images = "" if p["mean_diff_images"] is None else f" ({p['mean_diff_images']:+.1f} of {p['n_test']:,} images)"
    lines.append(f"A - B: mean {p['mean_diff']:+.3f} points{images}, standard error {se} (sd of differences / sqrt(n))")
    lines.append(f"A wins {p['a_wins']}, ties {p['ties']}, loses {p['a_loses']} of {p['n']}")
    for side in ("a", "b"):
        if p[f"only_in_{side}"]:
            lines.append(f"unpaired, only in {side.upper()}: seeds {p[f'only_in_{side}']}")
    return "\n".join(lines)


def compare(paths: Sequence[str | Path], out_png: str | Path) -> tuple[list[dict[str, Any]], Path]:
    runs = [load_run(d) for d in expand_dirs(paths)]
    split = split_of(runs, "compare")  # sealed runs are drawn on validation, never beside test curves
    rows = compare_rows(runs)
    # load_run keeps a sealed run's val figures under the test keys.
    curves = {row["run"]: [(x["epoch"], x["test_acc"]) for x in r.rows] for row, r in zip(rows, runs)}
    out_png = Path(out_png)
    plot_test_overlay(curves, out_png, f"{SPLIT_NAMES[split].capitalize()} accuracy per epoch", split)
    return rows, out_png

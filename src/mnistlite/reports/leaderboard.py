"""`mnistlite table`: tables over every model with a tag, each row a multi-seed sweep (finished seeds reused):
the reproduction table of the seed models, and the params -> accuracy frontier of the ladder."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..challenge import BUDGET, LAST_EPOCHS, TARGET, fmt_acc
from ..engine import rundir as rd
from ..errors import MnistliteError
from ..modelinfo import profile_entry
from ..models import config_for, get_entry, list_models
from ..runs.holding import holding_text, images_text
from ..runs.seeds import CONSISTENCY_JSON, claim_figures, run_seeds, scored_split
from .markdown import epoch_list, table

# What each seed README claims, in its own words (single runs, best epoch read off the test set).
CLAIMS: dict[str, str] = {
    "mnistlite8k_model1": "best test 99.00% (its log: 99.13% at epoch 15)",
    "mnistlite8k_model2": "best test ~99.18% (its log: best 99.13% at epoch 13)",
    "mnistlite8k_model3": "99.40-99.42% in epochs 9 and 11-15 (log)",
    "mnist8k_model3": "best test 99.46%, 99.4% in the last 7 epochs",
    "lowparam_7544": "99.41% at epoch 15",
    "efficientmnist_20k": "99.52% at epoch 20, 99.5%+ from epoch 16 (20 epochs)",
    "progression_model1": "best test 99.20%",
    "progression_model2": "best test 99.36%",
}

# What the held-consistently columns mean, under every table that has them.
HOLDING_NOTE = (
    f"± is the spread across seeds, all scored on one test set; test-set SD: that test set's own binomial sampling SD"
    f" at the mean (sqrt(p(1-p)/n), n its images, from the runs' logs). Seeds holding: seeds at ≥ {TARGET}% in"
    f" each of the last {LAST_EPOCHS} epochs, with the Clopper-Pearson 95% interval for the share of new seeds"
    f" that would hold. Margin: the worst last-{LAST_EPOCHS} reading minus {TARGET:.2f}, in test images."
    " A row marked val is a sealed validation sweep (the test set never read): its figures are on validation."
)


# Public results beside the ladder, as their sources state them (anchors.json names each one's repository, file
# and whether it was verified). None is a multi-seed last-epoch mean, so the plot draws them apart.
ANCHORS_FILE = Path(__file__).with_name("anchors.json")


def load_anchors() -> list[dict[str, Any]]:
    return list(json.loads(ANCHORS_FILE.read_text())["anchors"])


def anchors_table() -> str:
    head = ["public anchor", "params", "test accuracy", "epochs", "runs", "selected on test"]
    cells = ("epochs", "runs", "selected_on_test")
    rows = [[a["name"], f"{a['params']:,}", f"{a['test_acc']:.2f}", *(a[k] for k in cells)] for a in load_anchors()]
    return "\n".join(table(head, rows, "lrrrll", tight=True))


def run_table(
    tag: str, seeds: list[int], out: Path, *, jobs: int | str = 1, overrides: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    if (overrides or {}).get("val_size"):
        raise MnistliteError(
            "table reports test accuracy, and a run with a validation split never reads the test set: "
            "drop --val-size (choose on validation with `mnistlite seeds --val-size` or `tune`)"
        )
    return [run_seeds(config_for(name, **(overrides or {})), seeds, out / name, jobs=jobs) for name in list_models(tag)]


def load_rows(out: Path, tag: str) -> list[dict[str, Any]]:
    """Each model's consistency.json under `out`, with the held-consistently figures filled in for older ones."""
    dirs = [out / n for n in list_models(tag) if (out / n / CONSISTENCY_JSON).is_file()]
    aggs = [(d, rd.read_json(d / CONSISTENCY_JSON)) for d in dirs]
    return [{**claim_figures(agg, d), **agg} for d, agg in aggs]


def attach_threads(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Each row's CPU thread counts, from its seeds' config.json (consistency.json does not keep them)."""
    for s in rows:
        found = set()
        for r in s["per_seed"].values():
            cfg = out / s["model"] / r.get("run_dir", "") / "config.json"
            threads = rd.read_json(cfg).get("threads") if r.get("run_dir") and cfg.is_file() else None
            if threads:  # 0 (the default) means "torch's own choice": not a count to show
                found.add(int(threads))
        s["threads"] = sorted(found)
    return rows


def markdown_table(rows: list[dict[str, Any]], *, claims: bool, cost: bool = False) -> str:
    """`cost` adds MACs per image and the median whole-run seconds (each run's result.json `wall_seconds`)."""
    head = "| model | source | params |" + (" MACs/image | s per run, median |" if cost else "") + " epochs |"
    head += " seed README claims |" if claims else ""
    head += (
        f" ours: final test, mean ± std | test-set SD | min | worst last-{LAST_EPOCHS} | margin (images)"
        f" | seeds holding {TARGET}% (95% CI) | epochs where the mean ≥ {TARGET}% |"
    )
    sep = "|---|---|---:|" + ("---:|---:|" if cost else "") + "---:|" + ("---|" if claims else "")
    lines = [head, sep + "---:|" * 6 + "---|"]
    for s in rows:
        e, split = get_entry(s["model"]), scored_split(s)
        f, tag = s[f"final_{split}_acc"], "val " if split == "val" else ""  # a sealed sweep's figures say so
        sd = s.get(f"{split}_set_sampling", {}).get("binomial_sd_points")
        at_target = [r["epoch"] for r in s["per_epoch"] if r[f"{split}_acc"]["mean"] >= s["target"]]
        line = f"| `{s['model']}` | {e.source} | {s['params']:,} |"
        if cost:
            secs = [r["wall_seconds"] for r in s["per_seed"].values() if r.get("wall_seconds") is not None]
            threads = "/".join(map(str, s.get("threads", [])))
            median = f"{statistics.median(secs):.0f}" + (f" ({threads} thr)" if threads else "") if secs else "n/a"
            line += f" {profile_entry(e).macs:,} | {median} |"
        line += f" {s['epochs']} |" + (f" {CLAIMS.get(s['model'], 'n/a')} |" if claims else "")
        line += (
            f" {tag}{fmt_acc(f['mean'])} ± {f['std']:.2f} (n={s['n']}) | {'n/a' if sd is None else f'{sd:.3f}'} |"
            f" {tag}{fmt_acc(f['min'])} | {tag}{fmt_acc(s[f'last3_min_{split}_acc']['min'])} |"
            f" {images_text(s['margin'])} | {holding_text(s['holding'])} | {epoch_list(at_target) or 'none'} |"
        )
        lines.append(line)
    return "\n".join(lines)


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats with as few parameters: the params -> accuracy frontier."""
    best, out = float("-inf"), []
    for s in sorted(rows, key=lambda s: (s["params"], -s["final_test_acc"]["mean"])):
        if s["final_test_acc"]["mean"] > best:
            best = s["final_test_acc"]["mean"]
            out.append(s)
    return out


def plot_frontier(rows: list[dict[str, Any]], path: Path) -> None:
    from ..engine.plots import plt

    # A test-accuracy plot: a sealed sweep (validation figures) is in the table only.
    rows = sorted((s for s in rows if scored_split(s) == "test"), key=lambda s: s["params"])
    xs = [s["params"] for s in rows]
    ys, es, lo = ([s["final_test_acc"][k] for s in rows] for k in ("mean", "std", "min"))
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.errorbar(xs, ys, yerr=es, fmt="o", capsize=4, label="final test accuracy, mean ± std")
    front = pareto(rows)
    # A step line: a larger model that is not better (the flagship beside sep8k) sits below it, not on it.
    fx, fy = [s["params"] for s in front], [s["final_test_acc"]["mean"] for s in front]
    ax.step(fx, fy, where="post", color="tab:blue", alpha=0.5, label="best mean with at most x parameters")
    ax.plot(xs, lo, "v", color="gray", label="worst seed")
    prev_x, stack = 0.0, 0
    for s, x, y in zip(rows, xs, ys):
        # Neighbours closer than 30% in parameters would print on top of each other.
        stack = stack + 1 if prev_x and x / prev_x < 1.3 else 0
        prev_x = x
        label = f"{s['model']} (n={s['n']}" + (f", {s['epochs']} ep)" if s["epochs"] != 15 else ")")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -14 - 11 * stack), fontsize=7)
    for a in load_anchors():
        name, params, acc = a["name"], a["params"], a["test_acc"]
        ax.plot(params, acc, "x", color="tab:orange", ms=8)
        # Short and left of the mark: the ladder's labels sit right and below; the anchors table gives the rest.
        label = f"{name.split('/')[-1]}: {acc:.2f}%"
        ax.annotate(
            label, (params, acc), textcoords="offset points", xytext=(-6, 5), ha="right", fontsize=6, color="tab:orange"
        )
    ax.plot([], [], "x", color="tab:orange", label="public anchors (single or best-of runs)")
    ax.axhline(TARGET, color="red", ls="--", lw=1, label=f"{TARGET}% target")
    ax.axvline(BUDGET, color="black", ls=":", lw=1, label=f"{BUDGET // 1000}k budget")
    ax.set_xscale("log")
    ax.set_xlim(250, 40000)  # room for the labels at both ends
    ax.set_xlabel("trainable parameters (every model 15 epochs unless its label says otherwise)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

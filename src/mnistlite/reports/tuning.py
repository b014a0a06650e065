"""The ranking of `mnistlite tune` as markdown (tuning.md), from tuning.json's dict alone: validation columns only."""

from __future__ import annotations

from typing import Any

from ..challenge import LAST_EPOCHS
from .markdown import table as md_table


def fmt_recipe(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in recipe.items()) or "(none)"


def _acc(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "—"


def table(ranking: dict[str, Any]) -> str:
    seeds = ranking["seeds"]
    head = ["rank", "candidate", "architecture", "params", "MACs", "recipe overrides"]
    head += [f"val s{s}" for s in seeds] + ["mean val", f"worst last-{LAST_EPOCHS} val"]
    ema = any("mean_final_raw_val_acc" in r for r in ranking["candidates"])
    raw = ["mean_final_raw_val_acc", f"min_last{LAST_EPOCHS}_min_raw_val_acc"] if ema else []
    if raw:  # EMA candidates: the raw weights of the same runs
        head += ["mean val, raw weights", f"worst last-{LAST_EPOCHS}, raw weights"]
    head.append("s/run")
    rows = []
    for r in ranking["candidates"]:
        ident = [str(r["rank"] or "—"), r["name"], f"`{r['arch']}`", f"{r['params']:,}", f"{r['macs']:,}"]
        per_seed = [_acc(r["per_seed"][str(s)].get("final_val_acc")) for s in seeds]
        mean = f"**{r['mean_final_val_acc']:.2f}**" if r["mean_final_val_acc"] is not None else "incomplete"
        worst = _acc(r[f"min_last{LAST_EPOCHS}_min_val_acc"])
        raw_cells = [_acc(r.get(k)) for k in raw]
        rows.append(
            [*ident, fmt_recipe(r["recipe"]), *per_seed, mean, worst, *raw_cells, f"{r['mean_wall_seconds']:.0f}"]
        )
    return "\n".join(md_table(head, rows, "rllrrl" + "r" * (len(head) - 6), tight=True))


def markdown(ranking: dict[str, Any]) -> str:
    epochs = sorted({r["epochs"] for r in ranking["candidates"]})
    parts = [
        f"# Tuning: {ranking['file']}",
        "",
        f"Validation split only: every accuracy below is measured on the {ranking['val_size']:,} training "
        "images held out by `val_size` (never trained on). Test accuracy is deliberately not shown: "
        "candidates are chosen here, and the test set is reported only later, for the chosen candidate "
        "retrained on the full training set.",
        "",
        f"Budget: at most {ranking['budget']:,} parameters. Seeds: {', '.join(map(str, ranking['seeds']))}. "
        f'Epochs: {", ".join(map(str, epochs))}. "val sN" and "mean val" are final-epoch accuracies; '
        f'"worst last-{LAST_EPOCHS} val" is the lowest over every seed\'s last {LAST_EPOCHS} epochs. '
        f"Rank: {ranking['selection']}. Recipe overrides apply on top of the registered recipe "
        "(mnistlite_zoo.BASE_RECIPE for a spec).",
    ]
    if ranking.get("devices"):
        parts += ["", f"Devices: {', '.join(ranking['devices'])}."]
    if ranking.get("command"):
        parts += ["", f"```bash\n{ranking['command']}\n```"]
    parts += ["", table(ranking), ""]
    failed = [f"- {name}/seed{s}: {p['error']}" for name, s, p in _runs(ranking) if "error" in p]
    if failed:
        parts += ["Runs without a result:", "", *failed, ""]
    linked = [f"- {name}/seed{s} -> `{p['linked_to']}`" for name, s, p in _runs(ranking) if p.get("linked_to")]
    if linked:
        heading = "Linked from earlier folders (the same runs by the same-run rule, not trained here):"
        parts += [heading, "", *linked, ""]
    return "\n".join(parts)


def _runs(ranking: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r["name"], s, p) for r in ranking["candidates"] for s, p in r["per_seed"].items()]


def failed_runs(ranking: dict[str, Any]) -> int:
    return sum("error" in p for _, _, p in _runs(ranking))

"""The ranking of `mnistlite tune` as markdown (tuning.md), from tuning.json's dict alone: validation columns only."""

from __future__ import annotations

from typing import Any

from ..challenge import LAST_EPOCHS


def fmt_recipe(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in recipe.items()) or "(none)"


def _acc(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "—"


def table(ranking: dict[str, Any]) -> str:
    """The ranking as a markdown table: validation columns only."""
    seeds = ranking["seeds"]
    last = f"min_last{LAST_EPOCHS}_min_val_acc"
    head = ["rank", "candidate", "architecture", "params", "MACs", "recipe overrides"]
    head += [f"val s{s}" for s in seeds] + ["mean val", f"worst last-{LAST_EPOCHS} val"]
    raw = any("mean_final_raw_val_acc" in r for r in ranking["candidates"])
    if raw:  # EMA candidates: the raw weights of the same runs
        head += ["mean val, raw weights", f"worst last-{LAST_EPOCHS}, raw weights"]
    head.append("s/run")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|---|---|---:|---:|---|" + "---:|" * (len(head) - 6)]
    for r in ranking["candidates"]:
        vals = [_acc(r["per_seed"][str(s)].get("final_val_acc")) for s in seeds]
        mean = f"**{r['mean_final_val_acc']:.2f}**" if r["mean_final_val_acc"] is not None else "incomplete"
        cells = [
            str(r["rank"] or "—"),
            r["name"],
            "`" + r["arch"].replace("|", "\\|") + "`",  # a bare | splits the cell
            f"{r['params']:,}",
            f"{r['macs']:,}",
            fmt_recipe(r["recipe"]),
            *vals,
            mean,
            _acc(r[last]),
            *(
                [_acc(r.get("mean_final_raw_val_acc")), _acc(r.get(f"min_last{LAST_EPOCHS}_min_raw_val_acc"))]
                if raw
                else []
            ),
            f"{r['mean_wall_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    failed = [
        f"- {r['name']}/seed{s}: {p['error']}"
        for r in ranking["candidates"]
        for s, p in r["per_seed"].items()
        if "error" in p
    ]
    if failed:
        parts += ["Runs without a result:", "", *failed, ""]
    linked = [
        f"- {r['name']}/seed{s} -> `{p['linked_to']}`"
        for r in ranking["candidates"]
        for s, p in r["per_seed"].items()
        if p.get("linked_to")
    ]
    if linked:
        parts += [
            "Linked from earlier folders (the same runs by the same-run rule, not trained here):",
            "",
            *linked,
            "",
        ]
    return "\n".join(parts)


def failed_runs(ranking: dict[str, Any]) -> int:
    return sum("error" in p for r in ranking["candidates"] for p in r["per_seed"].values())

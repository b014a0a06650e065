"""Compare candidate architectures and recipes on the validation split.

A tuning file (TOML) names a parameter budget, the validation split and the
seeds, then the candidates:

    budget = 4999                 # most trainable parameters a candidate may have
    val_size = 5000               # held-out training images (default 5000)
    seeds = [1, 2]                # default [1, 2]
    models = ["my_models.py"]     # optional: files whose @register_model names candidates may use

    [[candidates]]
    name = "reference"            # its runs go to OUT/<name>/seed<S>/
    model = "mnistlite_frontier"  # a registered model, with its registered recipe (or my_models.py:Net,
                                  # relative to this file)...

    [[candidates]]
    name = "pad1_bs64"
    spec = {stages = [[6, 12], [12, 12, 12]], transitions = [8], first_padding = 1}  # ...or a family NetSpec
    recipe = {batch_size = 64}    # TrainConfig overrides (on mnistlite_zoo.BASE_RECIPE for a spec)

Every (candidate, seed) run is an ordinary run directory, trained in one pool
of worker processes; a run already finished with the same config is skipped.
The ranking reads validation accuracy only. Test accuracy still lands in each
run's metrics.csv (the trainer always reports it), but nothing here reads it:
choosing on it would turn the test set into a second validation split.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .config import TrainConfig, changed_fields
from .engine.device import cpu_cores
from .errors import MnistliteError
from .models.family import NetSpec, count_params, output_size
from .reports.experiment import IGNORED_FOR_MATCH, NAME_RE, _check_recipe, _check_seeds, _hint
from .runs import rundir as rd

TUNING_JSON = "tuning.json"
TUNING_MD = "tuning.md"
LEGACY_DEVICE_FILE = "device.txt"  # where runs made before result.json had "device" recorded it
DEFAULT_VAL_SIZE = 5000
DEFAULT_SEEDS = (1, 2)
LAST_EPOCHS = 3
TIE_PP = 0.02  # one image in 5,000: closer means are a tie, and the smaller model wins it

TOP_KEYS = ("budget", "val_size", "seeds", "models", "candidates")
CANDIDATE_KEYS = ("name", "model", "spec", "recipe")
SPEC_KEYS = ("stages", "transitions", "first_padding", "dropout", "bn", "sep_stages")
# Set by the file or the command line for every candidate alike, so candidates compete on equal terms.
NOT_IN_RECIPE = {
    "model": "use the candidate's `model` or `spec`",
    "seed": "list seeds in the top-level `seeds`",
    "val_size": "set the top-level `val_size`",
    "limit_train": "use --limit-train",
    "device": "use --device",
    "threads": "use --threads",
    "data_dir": "use --data-dir",
    "download": "it is not a recipe field",
}


@dataclass(frozen=True)
class Candidate:
    name: str
    model: str  # registry name; `family:<json>` for a spec
    spec: NetSpec | None  # the file's spec, else the registered model's own (None outside the family)
    from_spec: bool
    recipe: dict[str, Any]  # the file's overrides only
    params: int


@dataclass(frozen=True)
class TuningFile:
    path: Path
    budget: int
    val_size: int
    seeds: tuple[int, ...]
    candidates: tuple[Candidate, ...]

    def config(self, c: Candidate, seed: int, overrides: dict[str, Any] | None = None) -> TrainConfig:
        over = {**c.recipe, **(overrides or {}), "val_size": self.val_size, "seed": seed}
        return TrainConfig.for_model(c.model, **over)


# --- the file ---------------------------------------------------------------------------


def load_tuning(path: str | Path) -> TuningFile:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MnistliteError(f"{path}: tuning file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MnistliteError(f"{path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise MnistliteError(f"{path}: not valid TOML: {(str(e).splitlines() or ['?'])[0]}") from None
    return parse_tuning(doc, path)


def _int(value: Any, where: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise MnistliteError(f"{where} must be an integer >= {least}, got {value!r}")
    return value


def _unknown_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise MnistliteError(f"{where}: unknown key {key!r}{_hint(key, allowed)}; allowed: {', '.join(allowed)}")


def parse_spec(raw: Any, where: str) -> NetSpec:
    if not isinstance(raw, dict):
        raise MnistliteError(
            f"{where}: spec must be a table like {{stages = [[6, 12], [12, 12, 12]], transitions = [8]}}"
        )
    _unknown_keys(raw, SPEC_KEYS, f"{where}: spec")

    def widths(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(type(w) is int and w >= 1 for w in v)

    stages, transitions = raw.get("stages"), raw.get("transitions")
    if not isinstance(stages, list) or not stages or not all(widths(s) for s in stages):
        raise MnistliteError(
            f"{where}: spec.stages must be a list of non-empty lists of positive integers, got {stages}"
        )
    if not (transitions == [] or widths(transitions)) or len(transitions) != len(stages) - 1:
        raise MnistliteError(
            f"{where}: spec.transitions must list {len(stages) - 1} positive width(s), one per stage boundary, "
            f"got {transitions!r}"
        )
    pad, dropout, bn = raw.get("first_padding", 0), raw.get("dropout", 0.0), raw.get("bn", True)
    if pad not in (0, 1) or isinstance(pad, bool):
        raise MnistliteError(f"{where}: spec.first_padding must be 0 or 1, got {pad!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise MnistliteError(f"{where}: spec.dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(bn, bool):
        raise MnistliteError(f"{where}: spec.bn must be true or false, got {bn!r}")
    sep = raw.get("sep_stages", 0)
    if type(sep) is not int:
        raise MnistliteError(f"{where}: spec.sep_stages must be an integer, got {sep!r}")
    try:  # NetSpec checks the rest of its own invariants
        spec = NetSpec(
            stages=tuple(tuple(s) for s in stages),
            transitions=tuple(transitions),
            first_padding=pad,
            dropout=float(dropout),
            bn=bn,
            sep_stages=sep,
        )
    except ValueError as e:
        raise MnistliteError(f"{where}: spec.{e}") from None
    if output_size(spec) < 1:
        raise MnistliteError(f"{where}: spec shrinks the 28x28 image below 1x1 before the head; use fewer convs")
    return spec


def _model_params(model: str) -> tuple[NetSpec | None, int]:
    from .models import get_entry

    spec = getattr(get_entry(model).factory, "spec", None)
    if spec is not None:
        return spec, count_params(spec)
    from .modelinfo import profile_registered

    return None, profile_registered(model).params


def _parse_candidate(raw: Any, i: int, budget: int, src: str, named: dict[str, str] | None = None) -> Candidate:
    from .models.usercode import rebase
    from .search.space import spec_name

    label = f"{src}: candidate {i}"
    if not isinstance(raw, dict):
        raise MnistliteError(f"{label}: must be a table ([[candidates]])")
    if isinstance(raw.get("name"), str):
        label = f"{src}: candidate {raw['name']!r}"
    _unknown_keys(raw, CANDIDATE_KEYS, label)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise MnistliteError(f"{label}: `name` must be letters, digits, '.', '_' or '-' (a folder name), got {name!r}")
    if ("model" in raw) == ("spec" in raw):
        raise MnistliteError(f"{label}: give exactly one of `model` (a registered name) or `spec` (a family NetSpec)")
    recipe_raw = raw.get("recipe", {})
    if isinstance(recipe_raw, dict):
        for key in recipe_raw:
            if key in NOT_IN_RECIPE:
                raise MnistliteError(f"{label}: recipe cannot set `{key}`; {NOT_IN_RECIPE[key]}")
    recipe = _check_recipe(recipe_raw, f"{label}: recipe")
    if "spec" in raw:
        spec = parse_spec(raw["spec"], label)
        model, params = spec_name(spec), count_params(spec)
    else:
        model = raw["model"]
        if not isinstance(model, str):
            raise MnistliteError(f"{label}: `model` must be a registered model name, got {model!r}")
        model = (named or {}).get(model) or rebase(model, Path(src).parent)  # your file.py:Name, beside the file
        try:
            spec, params = _model_params(model)
        except MnistliteError as e:
            raise MnistliteError(f"{label}: {e}") from None
    if params > budget:
        raise MnistliteError(f"{label}: {params:,} parameters > budget {budget:,}")
    return Candidate(name, model, spec, "spec" in raw, recipe, params)


def parse_tuning(doc: dict[str, Any], path: Path) -> TuningFile:
    """Validate everything before anything trains; every error is one line naming the file."""
    src = str(path)
    _unknown_keys(doc, TOP_KEYS, src)
    if "budget" not in doc:
        raise MnistliteError(f"{src}: missing `budget` (the most trainable parameters a candidate may have)")
    budget = _int(doc["budget"], f"{src}: budget", 1)
    val_size = _int(doc.get("val_size", DEFAULT_VAL_SIZE), f"{src}: val_size", 1)
    seeds = _check_seeds(doc["seeds"], src) if "seeds" in doc else DEFAULT_SEEDS
    raw = doc.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise MnistliteError(f"{src}: no candidates; add at least one [[candidates]] table")
    from .models.usercode import named_models

    named = named_models(doc.get("models", []), path)
    candidates = [_parse_candidate(r, i, budget, src, named) for i, r in enumerate(raw, 1)]
    names = [c.name for c in candidates]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise MnistliteError(f"{src}: two candidates are named {dup!r}")
    tf = TuningFile(path, budget, val_size, seeds, tuple(candidates))
    for c in candidates:
        _register(c)
        try:  # types and ranges of every recipe value, now rather than an hour in
            tf.config(c, seeds[0])
        except MnistliteError as e:
            raise MnistliteError(f"{src}: candidate {c.name!r}: {e}") from None
    return tf


def _register(c: Candidate) -> None:
    """Spec candidates exist only in the processes that register them (like search trials)."""
    if c.from_spec:
        from .models.mnistlite_zoo import register_spec

        register_spec(c.model, c.spec, tags=("family", "tuning"), description=f"Tuning candidate {c.name}.")


# --- running -------------------------------------------------------------------------------


def run_dir(out: Path, c: Candidate, seed: int) -> Path:
    return out / c.name / f"seed{seed}"


def _matches(run: Path, cfg: TrainConfig) -> bool:
    try:
        saved = rd.read_json(run / rd.CONFIG)
    except MnistliteError:
        return False
    return isinstance(saved, dict) and not changed_fields(saved, cfg, IGNORED_FOR_MATCH)


def _run_one(job: tuple[Candidate, dict[str, Any], str, int]) -> tuple[str, str | None]:
    """Worker entry point: (run dir, error or None). Module level so spawned workers can import it."""
    from .consistency import _train_one
    from .engine import TrainingDiverged

    c, cfg_dict, run, threads = job
    _register(c)
    try:
        _train_one((cfg_dict, run, threads))
    except TrainingDiverged as e:  # a too-hot candidate must not stop the others
        return run, str(e).splitlines()[0]
    return run, None


def run_tuning(
    tf: TuningFile,
    out: Path,
    *,
    seeds: tuple[int, ...] | None = None,
    overrides: dict[str, Any] | None = None,
    jobs: int = 1,
    threads: int = 0,
    command: str = "",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every (candidate, seed) not already done into OUT/<candidate>/seed<S>/, then rank."""
    out = Path(out)
    seeds = tuple(seeds or tf.seeds)
    rd.prepare_run_dir(out, resume=True)
    todo = []
    for c in tf.candidates:
        for s in seeds:
            cfg, run = tf.config(c, s, overrides), run_dir(out, c, s)
            if (run / rd.RESULT).is_file() and _matches(run, cfg):
                echo(f"{c.name}/seed{s}: already done")
                continue
            if run.is_dir() and any(run.iterdir()) and not _matches(run, cfg):
                # Another config's run (the file changed): keep it aside rather than resume it as this one.
                run.rename(run.with_name(f"{run.name}.old{time.strftime('%Y%m%d-%H%M%S')}"))
            todo.append((c, cfg.to_dict(), str(run)))
    cores = cpu_cores()
    jobs = max(1, min(jobs, len(todo)))
    # Tiny convolutions scale poorly across threads and collapse when cores are oversubscribed.
    threads = threads or max(1, cores // jobs)
    total = len(tf.candidates) * len(seeds)
    echo(f"{len(todo)} of {total} run(s) to train, {jobs} at a time, {threads} thread(s) each")
    errors: dict[str, str] = {}
    if todo:
        # spawn, not fork: forking after torch has started its threads can deadlock.
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_one, (c, cfg, run, threads)) for c, cfg, run in todo]
            try:
                for k, done in enumerate(as_completed(futures), 1):
                    run, error = done.result()
                    if error:
                        errors[run] = error
                    what = f"FAILED: {error}" if error else _line(Path(run))
                    echo(f"[{k}/{len(todo)}] {Path(run).relative_to(out)}: {what}")
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # one broken run: do not train the rest for nothing
                raise
    summary = summarize(tf, out, seeds, errors, command=command, overrides=overrides)
    rd.write_json(out / TUNING_JSON, summary)
    rd.atomic_write_text(out / TUNING_MD, markdown(summary))
    return summary


def _line(run: Path) -> str:
    rows = rd.read_metrics(run / rd.METRICS)
    wall = rd.read_json(run / rd.RESULT).get("wall_seconds", 0.0)
    return f"val {rows[-1]['val_acc']:.2f}% at epoch {rows[-1]['epoch']} in {wall:.0f}s"


# --- ranking and reports ---------------------------------------------------------------------


def _seed_record(out: Path, c: Candidate, seed: int, error: str | None) -> dict[str, Any]:
    run = run_dir(out, c, seed)
    where = str(run.relative_to(out))  # relative: the tuning folder can move
    if not (run / rd.RESULT).is_file():
        return {"error": error or "not finished", "run_dir": where}
    metrics = rd.read_metrics(run / rd.METRICS)
    val = [r["val_acc"] for r in metrics]
    raw = [r.get("raw_val_acc") for r in metrics]  # an EMA run: the same trajectory's raw weights
    result = rd.read_json(run / rd.RESULT)
    legacy = run / LEGACY_DEVICE_FILE
    device = result.get("device") or (legacy.read_text().strip() if legacy.is_file() else None)
    return {
        "final_val_acc": val[-1],
        f"last{LAST_EPOCHS}_min_val_acc": min(val[-LAST_EPOCHS:]),
        "val_acc_per_epoch": val,
        **(
            {
                "final_raw_val_acc": raw[-1],
                f"last{LAST_EPOCHS}_min_raw_val_acc": min(raw[-LAST_EPOCHS:]),
                "raw_val_acc_per_epoch": raw,
            }
            if None not in raw
            else {}
        ),
        "wall_seconds": result.get("wall_seconds"),
        "device": device,
        "run_dir": where,
    }


def _raw_columns(per_seed: dict[str, dict[str, Any]], complete: bool) -> dict[str, Any]:
    """For EMA candidates, the raw weights' figures from the same runs: a paired comparison."""
    last = f"last{LAST_EPOCHS}_min_raw_val_acc"
    if not complete or not all("final_raw_val_acc" in p for p in per_seed.values()):
        return {}
    return {
        "mean_final_raw_val_acc": statistics.fmean(p["final_raw_val_acc"] for p in per_seed.values()),
        f"min_{last}": min(p[last] for p in per_seed.values()),
    }


def rank(rows: list[dict[str, Any]]) -> None:
    """Set `rank`: best mean final val accuracy first; within TIE_PP of the best left, fewest params first.

    Greedy, so the rule stays well defined when near-ties chain (A~B, B~C, A!~C).
    """
    left = [r for r in rows if r["mean_final_val_acc"] is not None]
    for r in rows:
        r["rank"] = None
    k = 0
    while left:
        best = max(r["mean_final_val_acc"] for r in left)
        tied = [r for r in left if best - r["mean_final_val_acc"] <= TIE_PP + 1e-9]
        pick = min(tied, key=lambda r: (r["params"], -r["mean_final_val_acc"], r["name"]))
        k += 1
        pick["rank"] = k
        left.remove(pick)


def summarize(
    tf: TuningFile,
    out: Path,
    seeds: tuple[int, ...],
    errors: dict[str, str] | None = None,
    *,
    command: str = "",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from .modelinfo import profile_registered
    from .search.space import describe_spec, spec_to_dict

    errors = errors or {}
    last = f"last{LAST_EPOCHS}_min_val_acc"
    rows = []
    for c in tf.candidates:
        per_seed = {str(s): _seed_record(out, c, s, errors.get(str(run_dir(out, c, s)))) for s in seeds}
        finals = [p["final_val_acc"] for p in per_seed.values() if "final_val_acc" in p]
        complete = len(finals) == len(seeds)
        rows.append(
            {
                "name": c.name,
                "model": c.model,
                "arch": describe_spec(c.spec) if c.spec else c.model,
                "spec": spec_to_dict(c.spec) if c.spec else None,
                "params": c.params,
                "macs": profile_registered(c.model).macs,
                "recipe": c.recipe,
                "epochs": tf.config(c, seeds[0], overrides).epochs,
                "per_seed": per_seed,
                "mean_final_val_acc": statistics.fmean(finals) if complete else None,
                "std_final_val_acc": (statistics.stdev(finals) if len(finals) > 1 else 0.0) if complete else None,
                f"min_{last}": min(p[last] for p in per_seed.values()) if complete else None,
                **_raw_columns(per_seed, complete),
                "mean_wall_seconds": statistics.fmean(
                    [p["wall_seconds"] for p in per_seed.values() if p.get("wall_seconds") is not None] or [0.0]
                ),
            }
        )
    rank(rows)
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0))
    return {
        "kind": "mnistlite-tuning",
        "file": str(tf.path),
        "command": command,
        "budget": tf.budget,
        "val_size": tf.val_size,
        "seeds": list(seeds),
        "overrides": dict(overrides or {}),
        "selection": f"mean final-epoch validation accuracy; within {TIE_PP} points, fewer parameters first",
        "test_set": "not read: candidates are compared on the validation split only",
        "devices": sorted({p["device"] for r in rows for p in r["per_seed"].values() if p.get("device")}),
        "candidates": rows,
    }


def _fmt_recipe(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in recipe.items()) or "(none)"


def _acc(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "—"


def table(summary: dict[str, Any]) -> str:
    """The ranking as a markdown table: validation columns only."""
    seeds = summary["seeds"]
    last = f"min_last{LAST_EPOCHS}_min_val_acc"
    head = ["rank", "candidate", "architecture", "params", "MACs", "recipe overrides"]
    head += [f"val s{s}" for s in seeds] + ["mean val", f"worst last-{LAST_EPOCHS} val"]
    raw = any("mean_final_raw_val_acc" in r for r in summary["candidates"])
    if raw:  # EMA candidates: the raw weights of the same runs
        head += ["mean val, raw weights", f"worst last-{LAST_EPOCHS}, raw weights"]
    head.append("s/run")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|---|---|---:|---:|---|" + "---:|" * (len(head) - 6)]
    for r in summary["candidates"]:
        vals = [_acc(r["per_seed"][str(s)].get("final_val_acc")) for s in seeds]
        mean = f"**{r['mean_final_val_acc']:.2f}**" if r["mean_final_val_acc"] is not None else "incomplete"
        cells = [
            str(r["rank"] or "—"),
            r["name"],
            "`" + r["arch"].replace("|", "\\|") + "`",  # a bare | splits the cell
            f"{r['params']:,}",
            f"{r['macs']:,}",
            _fmt_recipe(r["recipe"]),
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


def markdown(summary: dict[str, Any]) -> str:
    epochs = sorted({r["epochs"] for r in summary["candidates"]})
    parts = [
        f"# Tuning: {summary['file']}",
        "",
        f"Validation split only: every accuracy below is measured on the {summary['val_size']:,} training "
        "images held out by `val_size` (never trained on). Test accuracy is deliberately not shown: "
        "candidates are chosen here, and the test set is reported only later, for the chosen candidate "
        "retrained on the full training set.",
        "",
        f"Budget: at most {summary['budget']:,} parameters. Seeds: {', '.join(map(str, summary['seeds']))}. "
        f'Epochs: {", ".join(map(str, epochs))}. "val sN" and "mean val" are final-epoch accuracies; '
        f'"worst last-{LAST_EPOCHS} val" is the lowest over every seed\'s last {LAST_EPOCHS} epochs. '
        f"Rank: {summary['selection']}. Recipe overrides apply on top of the registered recipe "
        "(mnistlite_zoo.BASE_RECIPE for a spec).",
    ]
    if summary.get("devices"):
        parts += ["", f"Devices: {', '.join(summary['devices'])}."]
    if summary.get("command"):
        parts += ["", f"```bash\n{summary['command']}\n```"]
    parts += ["", table(summary), ""]
    failed = [
        f"- {r['name']}/seed{s}: {p['error']}"
        for r in summary["candidates"]
        for s, p in r["per_seed"].items()
        if "error" in p
    ]
    if failed:
        parts += ["Runs without a result:", "", *failed, ""]
    return "\n".join(parts)


def failed_runs(summary: dict[str, Any]) -> int:
    return sum("error" in p for r in summary["candidates"] for p in r["per_seed"].values())

"""`mnistlite experiment` trains an experiment file's steps per seed, then writes its report; `report`, `compare`,
`evaluate` and `audit` show what finished runs hold. A validation run is sealed: `evaluate` reads its test set only
with --read-test, and each test scoring appends a line to test_readings.jsonl, which `audit` reads."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from ..engine import rundir as rd
from ..errors import MnistliteError
from ..reports import experiment
from ..reports.compare import compare, format_compare, format_paired, is_seeds_dir, paired_seeds
from ..reports.render import render_experiment, render_runs
from ..reports.sections import is_experiment_dir
from ..runs.seeds import spread
from . import common

DEFAULT_ROOT = Path("runs") / "experiments"
DEFAULT_PNG = "runs/compare.png"
MAX_SHIFT = 4


def register(sub) -> None:
    p = sub.add_parser(
        "experiment",
        help="run an experiment file (TOML: steps x seeds) and write its report.md",
        description="Train every step of FILE for every seed into OUT/<step>/seed<k>/, skipping runs already "
        "done with the same config and resuming interrupted ones, then write OUT/report.md.",
    )
    p.add_argument("file", metavar="FILE", help="experiment file, e.g. experiments/progression.toml")
    common.add_file_run_flags(p, "step", "runs/experiments/<file stem>")
    common.add_dry_run(p, "1 epoch on 1,000 images per run, into runs/experiments/<stem>-dry-run unless --out is given")
    p.add_argument("--plan", action="store_true", help="validate the file and print what would run; train nothing")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="move aside (to <run>.old-<timestamp>) and retrain runs whose saved config differs from the file's",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_jobs_flag(p, "runs trained at once in worker processes (no per-epoch lines)")
    common.add_storage_flags(p, "runs", "experiment-<out folder>")
    p.set_defaults(func=run_experiment)

    p = sub.add_parser(
        "report",
        help="write a markdown report from an experiment folder or from run directories (no training)",
        description="EXPERIMENT_DIR (a folder written by 'mnistlite experiment'): re-render its report.md. "
        "RUN_DIR...: a report with one section per run, in the order given.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="one experiment folder, or one or more run directories")
    p.add_argument(
        "--out", metavar="FILE", help="report file (default: EXPERIMENT_DIR/report.md, else report.md beside the runs)"
    )
    p.set_defaults(func=run_report)

    p = sub.add_parser(
        "compare",
        help="compare run directories: a table of headline numbers and an overlay plot of test accuracy; "
        "two seeds folders are also paired seed by seed",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories (an experiment or seeds folder stands for all its runs); exactly two seeds folders "
        "(consistency.json) add a paired comparison: A - B over their common seeds, its standard error, A's wins",
    )
    p.add_argument("--out", metavar="PNG", default=DEFAULT_PNG, help=f"overlay plot (default: {DEFAULT_PNG})")
    p.add_argument("--json", action="store_true", help="print the rows as JSON, for scripts")
    p.set_defaults(func=run_compare)

    p = sub.add_parser(
        "evaluate", help="score trained runs again on val or test, plain and with small-shift test-time augmentation"
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN",
        help="run directories, sweep folders of seed<k>/ runs, or a model name with shipped weights",
    )
    p.add_argument(
        "--split", choices=("val", "test"), default="test", help="which split (val: the run's own held-out images)"
    )
    p.add_argument(
        "--tta-shift",
        type=int,
        default=1,
        metavar="N",
        help=f"views shifted 1..N pixels left, right, up and down, plus the original: 4N+1 views "
        f"(default 1, at most {MAX_SHIFT})",
    )
    p.add_argument(
        "--read-test",
        action="store_true",
        help="allow --split test on runs with a validation split (sealed: their test set is otherwise never read)",
    )
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: the run's, else $MNISTLITE_DATA)")
    p.add_argument("--json", metavar="FILE", help="also write every figure, per run and in summary, to FILE")
    common.add_trust_code(p, "allow rebuilding runs of your own model files")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "audit", help="list, per budget and claim, the test readings that came before it and the rounds they started"
    )
    p.add_argument(
        "dir", metavar="DIR", help="a folder of runs and claims (consistency.json, ladder.md), e.g. docs/results"
    )
    p.add_argument("--json", action="store_true", help="print the audit as JSON, for scripts")
    p.set_defaults(func=run_audit)


def run_experiment(args) -> None:
    experiment.run_experiment(
        experiment.load_experiment(args.file),
        common.file_out(args, DEFAULT_ROOT),
        seeds=common.file_seeds(args),
        overrides=common.file_overrides(args),
        rerun_changed=args.rerun_changed,
        plan_only=args.plan,
        progress=False if args.no_progress else None,
        command=common.command_line("experiment", args, switches=("dry_run", "rerun_changed")),
        storage=args.storage,
        study=args.study,
        jobs=args.jobs,
    )


def run_report(args) -> None:
    dirs = [Path(d) for d in args.dirs]
    exps = [d for d in dirs if is_experiment_dir(d)]
    if exps:
        if len(dirs) > 1:
            raise MnistliteError(f"{exps[0]} is an experiment folder: report on it alone, or list run directories only")
        report = render_experiment(exps[0], args.out)
    else:
        report = render_runs(dirs, args.out)
    print(f"wrote {report}")


def run_compare(args) -> None:
    rows, png = compare(args.dirs, args.out)
    dirs = [Path(d) for d in args.dirs]
    pair = paired_seeds(*dirs) if len(dirs) == 2 and all(map(is_seeds_dir, dirs)) else None
    if args.json:
        print(json.dumps(rows if pair is None else {"runs": rows, "paired": pair}, indent=2))
    else:
        print(format_compare(rows))
        if pair is not None:
            print(f"\n{format_paired(pair)}")
        print(f"\nplot: {png}")


def run_dirs(paths: list[str]) -> list[Path]:
    """Run directories; a sweep folder stands for its seed<k>/ runs, in seed order; a name, for its shipped weights."""
    from ..models.pretrained import has_pretrained

    out: list[Path] = []
    for p in map(Path, paths):
        if (p / rd.MODEL).is_file() or (not p.exists() and has_pretrained(str(p))):
            out.append(p)
            continue
        if not p.is_dir():
            raise MnistliteError(f"{p}: no such run directory")
        seeds = [d for d in p.iterdir() if re.fullmatch(r"seed\d+", d.name) and (d / rd.MODEL).is_file()]
        if not seeds:
            raise MnistliteError(f"{p}: neither a finished run (no {rd.MODEL}) nor a folder of seed<k>/ runs")
        out += sorted(seeds, key=lambda d: int(d.name[4:]))
    return out


def run_evaluate(args) -> None:
    import torch

    from ..data import load_dataset
    from ..deploy.predict import load_run
    from ..engine.tta import score
    from ..engine.writer import record_test_reading
    from ..fast.apply import accelerate

    if not 1 <= args.tta_shift <= MAX_SHIFT:
        raise MnistliteError(f"--tta-shift must be 1 to {MAX_SHIFT} pixels, got {args.tta_shift}")
    if args.json and not Path(args.json).resolve().parent.is_dir():  # before minutes of scoring, not after
        raise MnistliteError(f"--json {args.json}: folder {Path(args.json).parent} does not exist")
    dirs = run_dirs(args.paths)
    if args.split == "test" and not args.read_test:  # before any scoring: a sealed run stops the command
        for d in dirs:
            if (d / rd.CONFIG).is_file() and rd.read_json(d / rd.CONFIG).get("val_size"):
                raise MnistliteError(
                    f"{d}: a validation run, its test set is sealed; score it with --split val, "
                    "or read the test set anyway with --split test --read-test"
                )
    load = cache(load_dataset)  # once per data set, split and root, however many runs use it
    rows = []
    for d in dirs:
        r = load_run(d, trust_code=args.trust_code)
        cfg = r.config
        if args.split == "val" and not cfg.val_size:
            raise MnistliteError(f"{d}: trained without a validation split (--val-size 0); use --split test")
        root = args.data_dir or (cfg.data_dir if cfg.data_dir and Path(cfg.data_dir).is_dir() else None)
        split = getattr(load(cfg.dataset, data_dir=root, val_size=cfg.val_size, download=cfg.download), args.split)
        # The layout the run was judged in, so the convolutions round as the judge's did (mnistlite.fast: bit for bit).
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = accelerate(r.model)[0].to(memory_format=fmt)  # type: ignore[call-overload]  # stubs omit memory_format
        s = score(model, split, args.tta_shift, fill=(0.0 - r.mean) / r.std)
        if args.split == "test" and (d / rd.CONFIG).is_file():  # a run's folder (not shipped weights)
            row = {"epoch": (r.result or {}).get("epochs_run", cfg.epochs), "test_acc": s.plain}
            aug = {"tta_acc": s.tta, "tta_views": s.views}
            record_test_reading(d, state=r.model.state_dict(), config=cfg.to_dict(), params=r.params, rows=[row], **aug)
        rows.append({"run": str(d), "model": cfg.model, "seed": cfg.seed, "plain": s.plain, "tta": s.tta})
        print(f"{d}: {args.split} plain {s.plain:.2f}%, TTA ({s.views} views) {s.tta:.2f}% ({s.tta - s.plain:+.2f})")
    plain, tta = [r["plain"] for r in rows], [r["tta"] for r in rows]
    gain = [t - p for p, t in zip(plain, tta)]
    summary = {"n": len(rows), "plain": spread(plain), "tta": spread(tta), "gain": spread(gain)}
    if len(rows) > 1:
        m = summary
        print(
            f"n={m['n']}: plain {m['plain']['mean']:.3f} ± {m['plain']['std']:.3f}%, TTA "
            f"{m['tta']['mean']:.3f} ± {m['tta']['std']:.3f}%, gain {m['gain']['mean']:+.3f} "
            f"(per run {m['gain']['min']:+.2f} to {m['gain']['max']:+.2f})"
        )
    if args.json:
        views = 4 * args.tta_shift + 1
        doc = {"split": args.split, "tta_shift": args.tta_shift, "views": views, "runs": rows, "summary": summary}
        rd.write_json(Path(args.json), doc)
        print(f"wrote {args.json}")


def run_audit(args) -> None:
    from ..reports.audit import audit, render, to_json

    doc = audit(args.dir)
    print(to_json(doc) if args.json else render(doc), end="")

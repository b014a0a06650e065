"""`mnistlite search` and `tune`: architectures and recipes chosen on the validation split only. `search`: an Optuna
study under a parameter budget that many workers join through one --storage URL (docs/search.md); the test set is read
once per seed by --retrain-best. `tune`: every candidate of a tuning file trained per seed, ranked on validation."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ..errors import MnistliteError
from ..models.registry import BUDGET
from . import common

DEFAULT_TRIALS = 20
DEFAULT_ROOT = Path("runs") / "tune"


def register(sub) -> None:
    p = sub.add_parser(
        "search",
        help="search architecture + recipe under a parameter budget (Optuna; val split only)",
        description="Search family architectures and their recipe under --budget parameters. The objective is the "
        "final-epoch accuracy on a held-out validation split; the test set is never used by the search. Start the same "
        "command on several machines with one --storage URL and --study to share the work.",
    )
    p.add_argument("--budget", type=int, default=BUDGET, help=f"most trainable parameters (default {BUDGET})")
    p.add_argument("--epochs", type=int, default=15, help="epochs per trial (default 15)")
    p.add_argument(
        "--trials",
        type=int,
        help=f"trained trials the study should reach, over all workers (default {DEFAULT_TRIALS}; "
        "over-budget configs are rejected at once and do not count)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default sqlite:///<out>/search.db); postgresql://... for many machines",
    )
    p.add_argument("--study", metavar="NAME", help="study name (default search-<budget>)")
    common.add_patience_flag(p)
    p.add_argument("--val-size", type=int, default=5000, help="held-out validation images (default 5000)")
    p.add_argument("--limit-train", type=int, default=0, metavar="N", help="train on the first N training images")
    p.add_argument("--out", metavar="DIR", default="runs/search", help="output folder (default runs/search)")
    p.add_argument(
        "--show", action="store_true", help="print best trials; write best_trials.json, history.png, importances.png"
    )
    p.add_argument(
        "--retrain-best",
        action="store_true",
        help="retrain the best trial on the full training set (val-size 0) into <out>/retrain-best/seed<k>/, "
        "then test once per seed; finished seeds are reused, interrupted ones resumed; with --storage the "
        "seeds are shared among the workers",
    )
    p.add_argument("--seeds", type=int, default=5, help="seeds for --retrain-best (default 5)")
    p.add_argument("--retrain-epochs", type=int, help="epochs for --retrain-best (default: the study's --epochs)")
    p.add_argument(
        "--retrain-limit-train",
        type=int,
        default=0,
        metavar="N",
        help="--retrain-best on the first N training images only (smoke runs; default all)",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"], help="default median")
    p.add_argument("--startup-trials", type=int, default=8, help="random trials before TPE (default 8)")
    p.add_argument("--sampler-seed", type=int, help="TPE seed (default random; differ per worker)")
    p.add_argument("--seed", type=int, default=1, help="training seed of every trial (default 1)")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="S",
        help="seconds between trial heartbeats; a trial silent for 2x this is failed and retried once",
    )
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", help="data root holding MNIST/raw/")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per worker (default 1: nets this small gain more from one worker per "
        "core than from threads; 0 = all cores)",
    )
    p.set_defaults(func=run_search)

    p = sub.add_parser(
        "tune",
        help="compare candidate architectures + recipes on the validation split (TOML file)",
        description="Train every candidate of FILE for every seed into OUT/<candidate>/seed<S>/ through one pool "
        "of --jobs workers, skipping runs already done with the same config, then rank the candidates by "
        "final-epoch validation accuracy in OUT/tuning.json and OUT/tuning.md. The test set is not read.",
    )
    p.add_argument("file", metavar="FILE", help="tuning file, e.g. experiments/tuning/frontier.toml")
    common.add_file_run_flags(p, "candidate", "runs/tune/<file stem>")
    common.add_jobs_flag(p, "runs trained at once; on CUDA they share the GPU")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads per run (default: cores // jobs)")
    common.add_dry_run(p, "1 epoch on 1,000 images per run, into runs/tune/<stem>-dry-run unless --out is given")
    p.set_defaults(func=run_tune)


def run_search(args: argparse.Namespace) -> None:
    common.check_at_least(args, budget=100, epochs=1, trials=0)
    if args.val_size < 1:
        raise MnistliteError("--val-size must be at least 1: the search is scored on the validation split")
    common.check_at_least(args, limit_train=0, retrain_limit_train=0, retrain_epochs=1, seeds=1, startup_trials=0)
    if args.timeout is not None and args.timeout <= 0:
        raise MnistliteError(f"--timeout must be positive, got {args.timeout}")
    if args.heartbeat < 1:
        raise MnistliteError(f"--heartbeat must be at least 1 second, got {args.heartbeat}")
    from ..runs import storage as st
    from ..search import objective, retrain, show, worker
    from ..search import study as ss

    out = Path(args.out)
    # Searching is the default; --show / --retrain-best alone only report on the study.
    trials = args.trials if args.trials is not None else (0 if args.show or args.retrain_best else DEFAULT_TRIALS)
    if not args.storage:
        out.mkdir(parents=True, exist_ok=True)
    url = args.storage or st.sqlite_url(out / "search.db")
    storage = st.make_storage(url, heartbeat_interval=args.heartbeat)
    name = args.study or f"search-{args.budget}"
    protocol = ss.Protocol(**{f.name: getattr(args, f.name) for f in fields(ss.Protocol)})  # flags of those names
    run_fields = {"device": args.device, "threads": args.threads}
    if trials > 0:
        study = ss.open_search_study(
            storage,
            name,
            protocol,
            sampler=ss.make_sampler(args.sampler_seed, args.startup_trials),
            pruner=ss.make_pruner(args.pruner, args.epochs),
        )
        data = objective.load_search_data(protocol, data_dir=args.data_dir)
        print(
            f"study {name} in {st.redact(url)}: {trials} trials of {args.epochs} epoch(s), budget "
            f"{args.budget:,} params, {len(data.train):,} train / {len(data.val):,} val images"
        )
        worker.run_search_worker(
            study, objective.make_objective(protocol, data, run=run_fields), trials, timeout=args.timeout
        )
        for t in ss.best_trials(study, 1):  # the best so far, if any
            print(
                f"best so far: trial {t.number}, val {t.value:.2f}%, {t.user_attrs.get('params'):,} params, "
                f"{t.user_attrs.get('arch')}"
            )
    else:
        study = ss.load_study(storage, name)
    if args.show:
        show.show_study(study, out)
    if args.retrain_best:
        retrain.retrain_best(
            study,
            args.seeds,
            out,
            epochs=args.retrain_epochs,
            limit_train=args.retrain_limit_train,
            data_dir=args.data_dir,
            run=run_fields,
            storage=args.storage,
        )


def run_tune(args) -> int:
    from ..reports.tuning import failed_runs, table
    from ..tuning import TUNING_JSON, TUNING_MD, load_tuning, run_tuning

    if args.threads < 0:
        raise MnistliteError(f"--threads must be 0 (cores // jobs) or more, got {args.threads}")
    seeds = common.file_seeds(args)
    tf = load_tuning(args.file)
    overrides = common.file_overrides(args)
    if overrides:  # a bad --epochs fails here, before any worker starts
        for c in tf.candidates:
            tf.config(c, tf.seeds[0], overrides)
    out = common.file_out(args, DEFAULT_ROOT)
    ranking = run_tuning(
        tf,
        out,
        seeds=seeds,
        overrides=overrides,
        jobs=args.jobs,
        threads=args.threads,
        command=common.command_line("tune", args, extra=("jobs",) + (("threads",) if args.threads else ())),
    )
    print(table(ranking))
    print(f"wrote {out / TUNING_JSON} and {out / TUNING_MD}")
    failed = failed_runs(ranking)
    if failed:
        print(f"{failed} run(s) have no result; see {out / TUNING_MD}", file=sys.stderr)
    return 1 if failed else 0

"""`train(cfg)` and `resume(run_dir)`: the front door every command and the notebook API use. Nothing here changes
process-wide state for good: threads are restored on the way out, the allocator tuned only where the CLI asked."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..data import Dataset
from ..errors import MnistliteError
from ..models import ModelEntry, count_params, get_entry
from ..models.usercode import entry_from_run
from . import rundir as rd
from .bn_path import for_run as resolve_bn_path
from .checkpoint import Progress, check_checkpoint, load_checkpoint, restore
from .console import Echo
from .cuda_graph import resolve as resolve_cuda_graph
from .cuda_graph import stepper
from .device import apply_requested_allocator_tuning, resolve_device, threads
from .evaluation import Judge
from .loop import Loop, run_epochs
from .parts import build_parts, load_data
from .precision import for_run as resolve_precision
from .result import RunResult
from .writer import curves_title, layer_table_text, model_file, record_test_reading, write_run_files

OnEpoch = Callable[[dict[str, Any]], None]


def train(
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    data: Dataset | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    on_epoch: OnEpoch | None = None,
    model: ModelEntry | None = None,
    evaluate_test: bool = True,
) -> RunResult:
    """Train `cfg.model` under `cfg`; write the run directory when `run_dir` is given. `data` lets callers
    load MNIST once; `on_epoch` sees each epoch's metrics row (a search prunes there); `model` replaces looking
    `cfg.model` up. A run with a validation split is sealed: it never scores the test split, whatever
    `evaluate_test` says (choices are made on validation)."""
    t_start = time.perf_counter()
    entry = model or get_entry(cfg.model)
    if entry.code is not None:
        if cfg.model_sha256 is None:  # a config made by hand, not by models.config_for
            cfg = cfg.replace(model_sha256=entry.code.sha256)
        elif cfg.model_sha256 != entry.code.sha256:
            raise MnistliteError(
                f"{entry.code.path} changed after this run was planned (its SHA-256 is no longer the config's); "
                "run the command again to train the file as it is now"
            )
    cfg = cfg.validated()
    out = rd.prepare_run_dir(run_dir) if run_dir is not None else None
    return _run(cfg, entry, out, evaluate_test and not cfg.val_size, t_start, data, progress, quiet, on_epoch)


def resume(
    run_dir: str | Path,
    *,
    trust_code: bool = False,
    data: Dataset | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    on_epoch: OnEpoch | None = None,
) -> RunResult:
    """Continue an interrupted run from its last checkpoint, to the same bits; a user's model needs `trust_code`."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MnistliteError(f"{run_dir}: no such run directory; nothing to resume")
    nothing_saved = MnistliteError(
        f"{run_dir / rd.CHECKPOINT}: no checkpoint there; nothing to resume (the run stopped before its "
        f"first epoch was saved): start it again with a new --out, or delete {run_dir} first"
    )
    if not any(os.path.lexists(run_dir / name) for name in (rd.CONFIG, rd.CHECKPOINT)):
        raise nothing_saved  # killed even before config.json was written
    try:
        cfg = TrainConfig.from_dict(rd.read_json(run_dir / rd.CONFIG))
    except MnistliteError as e:
        raise MnistliteError(str(e) if str(run_dir) in str(e) else f"{run_dir / rd.CONFIG}: {e}") from None
    model = entry_from_run(run_dir, cfg.to_dict(), trust_code=trust_code)
    if not os.path.lexists(run_dir / rd.CHECKPOINT):
        raise nothing_saved  # stopped or killed in its first epoch
    ckpt = check_checkpoint(load_checkpoint(run_dir / rd.CHECKPOINT), cfg, run_dir)
    entry = model or get_entry(cfg.model)
    cfg = cfg.validated()
    out = rd.prepare_run_dir(run_dir, resume=True)
    # As the run started; a validation run is sealed even if it started before the seal.
    evaluate_test = bool(ckpt.get("evaluate_test", True)) and not cfg.val_size
    return _run(cfg, entry, out, evaluate_test, t_start, data, progress, quiet, on_epoch, checkpoint=ckpt)


def _run(
    cfg: TrainConfig,
    entry: ModelEntry,
    out: Path | None,
    evaluate_test: bool,
    t_start: float,
    data: Dataset | None,
    progress_bar: bool | None,
    quiet: bool,
    on_epoch: OnEpoch | None,
    checkpoint: dict[str, Any] | None = None,
) -> RunResult:
    """The run itself: settle the config for this machine (precision, BN path, CUDA graph), then train."""
    from ..modelinfo import architecture_of, budget_verdict, profile_entry

    with closing(Echo(out / rd.LOG if out else None, quiet=quiet)) as echo, threads(cfg.threads) as n_threads:
        apply_requested_allocator_tuning()  # the CLI's choice, carried to spawned workers by the environment
        device = resolve_device(cfg.device)
        # After the device and the threads: auto's rules depend on them. config.json records what
        # ran (fp32 or bf16), never "auto", so a resume or a re-run elsewhere computes the same way.
        resumed = checkpoint.get("config") if checkpoint else None
        precision = resolve_precision(cfg, device, resumed)
        cfg = cfg.replace(precision=precision.precision)
        bn_path = resolve_bn_path(cfg, device, resumed)
        cfg = cfg.replace(bn_fusion=bn_path.path)
        # Run-only, like the BN path: a resumed run decides afresh for the machine it resumes on.
        graph = resolve_cuda_graph(cfg if resumed is None else cfg.replace(cuda_graph="auto"), device)
        cfg = cfg.replace(cuda_graph=graph.value)
        if out is not None and checkpoint is None:
            write_run_files(out, config=cfg.to_dict(), model_source=entry.code.data if entry.code else None)
        echo(("Resuming" if checkpoint else "Training") + f" with config:\n{cfg.to_json()}")
        for decision in (precision, bn_path, graph):
            echo(decision.line)
        data = (load_data(cfg) if data is None else data).to(device)
        parts = build_parts(cfg, data, device, entry, echo)
        prof = profile_entry(entry)  # anywhere: profiling forks the global RNG and puts it back
        params = count_params(parts.model)
        if out is not None and checkpoint is None:
            write_run_files(out, layer_table=layer_table_text(prof.table, prof.macs, prof.params))
        echo(
            f"Model {cfg.model}: {params:,} trainable parameters, {budget_verdict(params)} | device {device}, "
            f"{n_threads} CPU threads"
        )
        if checkpoint is not None:
            assert out is not None  # resume() always has a run directory
            progress = restore(parts, checkpoint, out / rd.CHECKPOINT, t_start)
            progress.evaluate_test = evaluate_test  # resume() sealed a validation run started before the seal
            echo(f"Resumed after epoch {progress.epochs_done} of {cfg.epochs}")
        else:
            progress = Progress(session_start=t_start, evaluate_test=evaluate_test)
        splits = {"val": data.val, "test": data.test if progress.evaluate_test else None}
        loop = Loop(
            parts=parts,
            train=data.train,
            judge=Judge({k: v for k, v in splits.items() if v is not None}, parts.cfg.eval_batch_size, parts.autocast),
            echo=echo,
            out=out,
            show_bar=sys.stderr.isatty() if progress_bar is None else progress_bar,
            on_epoch=on_epoch,
            step=stepper(parts, graph),
        )
        first = progress.epochs_done
        try:
            run_epochs(loop, progress)
        finally:  # an interrupted or diverged session has read the test set too
            if out is not None:
                state, rows = parts.eval_model.state_dict(), progress.rows[first:]
                record_test_reading(out, state=state, config=cfg.to_dict(), params=params, rows=rows)
        judged = parts.eval_model
        result = RunResult(
            config=cfg,
            params=params,
            metrics=progress.rows,
            wall_seconds=progress.elapsed(),
            run_dir=out,
            summary=rd.headline_numbers(progress.rows),
            macs=prof.macs,
            device=f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type,
            model=judged.eval(),
            architecture=architecture_of(judged),
            sessions=progress.sessions,
            precision_reason=precision.reason,
            bn_fusion_reason=bn_path.reason,
            cuda_graph_reason=graph.reason,
        )
        if out is not None:
            try:
                write_run_files(
                    out,
                    metrics=progress.rows,
                    model=model_file(judged, cfg.to_dict(), params),
                    curves=curves_title(cfg.to_dict()),
                    result=result.to_dict(),
                )
            except OSError as e:  # curves.png: the other files are written atomically and say so themselves
                raise MnistliteError(
                    f"cannot write the final files in {out} ({e.strerror or e}); fix that, then finish with: "
                    f"mnistlite train --resume {out}"
                ) from None
        echo(_done_line(result))
        return result


def _done_line(result: RunResult) -> str:
    s, out = result.summary, result.run_dir
    if s.get("final_test_acc") is not None:
        best, last3 = s["best_test_acc"], s["last3_min_test_acc"]
        scores = f"final test {s['final_test_acc']:.2f}%, best {best:.2f}%, last-3 min {last3:.2f}%"
    elif s.get("final_val_acc") is not None:  # the test set was skipped
        why = "sealed: a validation run" if result.config.val_size else "not evaluated"
        scores = f"final val {s['final_val_acc']:.2f}%, best {s['best_val_acc']:.2f}% (test set {why})"
    else:
        scores = "test set not evaluated"
    return f"Done: {scores} in {result.wall_seconds:.1f}s" + (f" -> {out}" if out else "")

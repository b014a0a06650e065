"""`mnistlite bench`: our in-memory batched pipeline against the seeds' per-sample pipeline, and the figures the
automatic choices are committed from. The allocator tuning (engine/device.py) is process-wide, so the baseline
runs faster here than in a seed's own script: the ratio is conservative.

    timing.py  the timers, the baseline pipeline and the epoch in turns; this module runs and formats them
"""

from __future__ import annotations

import platform
import resource
import statistics
import time
from typing import Any

import torch

from ..config import TrainConfig
from ..data import load_dataset, synthetic_data  # noqa: F401  (synthetic_data: bench's API)
from ..engine import bn_path, train
from ..engine import precision as prec
from ..engine.device import cpu_cores, resolve_device, set_threads
from ..models import config_for, count_params, create_model
from .timing import epoch_rounds, format_lines, time_eval, time_ours


def machine_info() -> dict[str, Any]:
    return {
        "cpu": prec.cpuinfo()[0] or platform.processor() or "",
        # Two CPUs may both say "AMD EPYC": the vector ISA and a measured matmul rate tell them apart (AVX2: 3x slower).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_units": prec.bf16_units(),  # AMX / AVX512_BF16: what bf16 autocast runs on (engine/precision.py)
        "matmul_gflops": round(matmul_peak_gflops(), 1),
        "cores": cpu_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **({"gpu": torch.cuda.get_device_name(0)} if torch.cuda.is_available() else {}),
    }


def matmul_peak_gflops(n: int = 1024, reps: int = 20) -> float:
    """This machine's float32 matrix-multiply rate on torch's threads: the roofline for a training step."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def interleaved(cfg: TrainConfig, field: str, a: str, b: str, time_fn, rounds: int) -> dict[str, Any]:
    """Median training images/s with `field` = a and = b, timed in turns: load from elsewhere falls on both alike."""
    rates: dict[str, list[float]] = {a: [], b: []}
    for _ in range(rounds):
        for v in (a, b):
            rates[v].append(time_fn(cfg.replace(**{field: v})))
    med = {v: statistics.median(r) for v, r in rates.items()}
    return {
        f"{a}_train_images_per_s": round(med[a]),
        f"{b}_train_images_per_s": round(med[b]),
        f"{b}_speedup": round(med[b] / med[a], 3),
        "rounds": rounds,
    }


def run_bench(
    model: str = "mnistlite8k_model3",
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    steps: int = 100,
    baseline_batches: int | None = 100,
    baseline_workers: int = 2,
    epoch: bool = True,
    full: bool = False,
    threads: int = 0,
    overrides: dict[str, Any] | None = None,
    against: str | None = None,
    precision: bool = True,
    paths: bool = True,
    rounds: int = 3,
) -> dict[str, Any]:
    """All figures as a dict (the JSON of `mnistlite bench --json`); the flags are the command's."""
    set_threads(threads)
    dev = resolve_device(device)
    # The seeds' Model3 pipeline rotates by +-7 degrees; keep that for a fair comparison.
    over = {"rotation": 7.0, **(overrides or {})}
    cfg = config_for(model, device=str(dev), data_dir=data_dir, **over)
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, data_dir=data_dir)
    load_s = time.perf_counter() - t0
    data_dev = data.to(dev)
    out: dict[str, Any] = {
        "model": model,
        "params": count_params(create_model(model)),
        "batch_size": cfg.batch_size,
        "rotation": cfg.rotation,
        "device": str(dev),
        "machine": machine_info(),
        "data_load_seconds": round(load_s, 3),
    }
    tr = time_ours(cfg, data_dev, steps, dev)
    out["train_images_per_s"] = round(tr.images_per_s)
    out["train_precision"] = prec.resolve(cfg, dev).precision
    out["train_bn_fusion"] = bn_path.resolve(cfg, dev).path
    out["eval_images_per_s"] = round(time_eval(cfg, data_dev, dev).images_per_s)

    def rate(c: TrainConfig) -> float:
        return time_ours(c, data_dev, steps, dev).images_per_s

    if precision:  # fp32 against bf16 autocast, with what `auto` decides here
        auto = prec.resolve(cfg.replace(precision="auto", bf16=False), dev)
        compared = interleaved(cfg, "precision", "fp32", "bf16", rate, 2)
        out["precision"] = {**compared, "auto": auto.precision, "auto_reason": auto.reason}
    if paths:  # the fused unit against torch's layers at this precision: engine/bn_path.py's MEASURED rows
        pcfg = cfg.replace(precision=prec.resolve(cfg, dev).precision)
        compared = interleaved(pcfg, "bn_fusion", "fused", "torch", rate, 2)
        auto_path, n_threads = bn_path.resolve(pcfg.replace(bn_fusion="auto"), dev), torch.get_num_threads()
        out["bn_paths"] = {
            "precision": pcfg.precision,
            "threads": n_threads,
            "cpu_kind": list(bn_path.cpu_kind(n_threads)),
            **compared,
            "auto": auto_path.path,
            "auto_reason": auto_path.reason,
        }
    out.update(epoch_rounds(cfg, data, data_dev, dev, rounds, epoch, baseline_batches, baseline_workers, tr))
    if against is not None:
        acfg = config_for(against, **{k: v for k, v in cfg.to_dict().items() if k not in ("model", "model_sha256")})
        out["against"] = {"model": against, "params": count_params(create_model(against))}
        for key, path in (("fast_path", "fused"), ("plain_torch", "torch")):
            c = acfg.replace(bn_fusion=path)
            row: dict[str, Any] = {"train_images_per_s": round(rate(c))}
            if epoch:
                ep_a = time_ours(c, data_dev, None, dev)
                row["epoch_seconds"] = round(ep_a.seconds + time_eval(acfg, data_dev, dev).seconds, 3)
                row["epoch_ratio"] = round(row["epoch_seconds"] / out["epoch_seconds"], 3)
            out["against"][key] = row
    if full:
        t0 = time.perf_counter()
        res = train(config_for(model, device=str(dev), data_dir=data_dir), progress=False, quiet=True)
        out["full_run_seconds"] = round(time.perf_counter() - t0, 2)
        out["full_run_epochs"] = res.config.epochs
        out["full_run_final_test_acc"] = res.summary["final_test_acc"]
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    return out


def format_bench(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']} ({m.get('cpu_capability', '?')}, float32 matmul {m.get('matmul_gflops', '?')} GFLOP/s) "
        f"| {m['cores']} cores, {m['torch_threads']} torch threads | torch {m['torch']}",
        f"model {r['model']} ({r['params']:,} params), batch {r['batch_size']}, "
        f"rotation ±{r['rotation']}°, on {r['device']}",
        f"data load (read, verify, normalise): {r['data_load_seconds']:.2f} s",
        f"train throughput: {r['train_images_per_s']:,} img/s ({r['train_precision']}, BN path {r['train_bn_fusion']})"
        f"   eval throughput: {r['eval_images_per_s']:,} img/s",
    ]
    if p := r.get("precision"):
        units = ", ".join(m.get("bf16_units") or []) or "no bf16 units"
        lines.append(
            f"precision ({units}): fp32 {p['fp32_train_images_per_s']:,} img/s, bf16 autocast "
            f"{p['bf16_train_images_per_s']:,} img/s = {p['bf16_speedup']:.2f}x (medians of {p['rounds']} "
            "interleaved rounds)"
        )
        lines.append(f"precision auto -> {p['auto']} ({p['auto_reason']})")
    if b := r.get("bn_paths"):
        lines.append(
            f"BatchNorm-ReLU ({b['precision']}, {b['threads']} threads): fused unit "
            f"{b['fused_train_images_per_s']:,} img/s, torch's layers {b['torch_train_images_per_s']:,} img/s "
            f"= {b['torch_speedup']:.2f}x (medians of {b['rounds']} interleaved rounds)"
        )
        lines.append(f"bn-fusion auto -> {b['auto']} ({b['auto_reason']})")
    if "epoch_seconds" in r:
        lines.append(
            f"one epoch (train 60k + test 10k): {r['epoch_seconds']:.2f} s "
            f"(train {r['epoch_train_seconds']:.2f} s, test {r['epoch_test_seconds']:.2f} s)"
        )
    if "baseline_train_images_per_s" in r:
        lines.append(
            f"baseline (per-sample DataLoader, {r['baseline_workers']} workers, {r['baseline_batches']} batches): "
            f"{r['baseline_train_images_per_s']:,} img/s -> about {r['baseline_epoch_seconds']:.1f} s per epoch"
        )
        epoch_x = f", epoch {r['speedup_epoch']}x" if "speedup_epoch" in r else ""
        lines.append(f"speed-up: training {r['speedup_train']}x{epoch_x}")
    lines += format_lines(r)
    if a := r.get("against"):
        for key, what in (("fast_path", "on the fused unit"), ("plain_torch", "on torch's layers")):
            row = a[key]
            ep = ""
            if "epoch_seconds" in row:
                ep = f", one epoch {row['epoch_seconds']:.2f} s = {row['epoch_ratio']:.3f}x {r['model']}'s"
            lines.append(
                f"against {a['model']} ({a['params']:,} params) {what}: {row['train_images_per_s']:,} img/s{ep}"
            )
    if "full_run_seconds" in r:
        lines.append(
            f"full {r['full_run_epochs']}-epoch run: {r['full_run_seconds']:.1f} s end to end, "
            f"final test {r['full_run_final_test_acc']:.2f}%"
        )
    lines.append(f"peak memory (RSS): {r['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)

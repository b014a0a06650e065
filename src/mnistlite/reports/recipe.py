"""A run's recipe (its config.json, less where and how fast it ran): in one line, what matters, what changed."""

from __future__ import annotations

from typing import Any

from ..config import RUN_ONLY_FIELDS, saved_value


def recipe_text(cfg: dict[str, Any]) -> str:
    """A run's recipe in one readable line."""
    if not cfg:
        return "unknown"
    parts = []
    opt = str(cfg.get("optimizer", "sgd"))
    if opt == "sgd":
        mom = cfg.get("momentum", 0)
        parts.append("SGD" + (f" (momentum {mom:g}{', Nesterov' if cfg.get('nesterov') else ''})" if mom else ""))
    else:
        parts.append({"adam": "Adam", "adamw": "AdamW"}.get(opt, opt))
    sched = cfg.get("scheduler", "none")
    if sched == "onecycle":
        parts.append(
            f"OneCycle LR to {cfg.get('max_lr'):g} (starts /{cfg.get('div_factor'):g}, ends "
            f"/{cfg.get('final_div_factor'):g} lower, {cfg.get('pct_start'):.0%} warm-up, {cfg.get('anneal_strategy')})"
        )
    elif sched == "step":
        parts.append(f"LR {cfg.get('lr'):g}, x{cfg.get('gamma'):g} every {cfg.get('step_size')} epochs")
    else:
        parts.append(f"constant LR {cfg.get('lr'):g}")
    parts += [f"{k.replace('_', ' ')} {cfg[k]:g}" for k in ("weight_decay", "label_smoothing") if cfg.get(k)]
    parts += [f"batch {cfg.get('batch_size')}", f"{cfg.get('epochs')} epochs"]
    augmentations = {"rotation": "±{:g}°", "translate": "±{:.0%}", "scale": "±{:.0%}", "shear": "±{:g}°"}
    aug = [f"{k} {spec.format(cfg[k])}" for k, spec in augmentations.items() if cfg.get(k)]
    if cfg.get("crop_p"):
        aug.append(f"centre-crop zoom p={cfg['crop_p']:g} ({cfg.get('crop_size')} px)")
    parts.append("augmentation: " + (", ".join(aug) if aug else "none"))
    if cfg.get("ema"):
        parts.append(f"judged and saved by a moving average of the weights (decay {cfg['ema']:g})")
    d = cfg.get("dropout")
    parts.append("dropout: the model's own" if d is None else f"dropout {d:g}")
    text = "; ".join(parts)
    if cfg.get("limit_train"):
        text += f"; **trained on the first {cfg['limit_train']:,} images only**"
    if cfg.get("val_size"):
        text += f"; {cfg['val_size']:,} training images held out for validation"
    return text


def recipe_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config fields that matter for this config (an inactive scheduler's knobs do not)."""
    sched, opt = cfg.get("scheduler"), cfg.get("optimizer")
    skip = set(RUN_ONLY_FIELDS | {"model", "seed"})  # differ between steps by construction, or where/how fast it ran
    if sched != "step":
        skip |= {"step_size", "gamma"}
    if sched != "onecycle":
        skip |= {"max_lr", "pct_start", "div_factor", "final_div_factor", "anneal_strategy", "three_phase"}
    else:
        skip.add("lr")  # OneCycle starts at max_lr / div_factor
    if opt != "sgd":
        skip |= {"momentum", "nesterov"}
    if not cfg.get("crop_p"):
        skip.add("crop_size")
    return {k: v for k, v in cfg.items() if k not in skip}


def value_text(v: Any) -> str:
    if v is None:
        return "model default"
    return f"{v:g}" if isinstance(v, float) else str(v)


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'key a -> b' for every key of both sides whose value differs."""
    return [
        f"{k} {value_text(before[k])} -> {value_text(after[k])}" for k in before if k in after and before[k] != after[k]
    ]


def recipe_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Changed recipe fields; fields only the new recipe uses (a new scheduler's knobs) are listed as set.
    A field one side lacks was saved before it existed and ran with its default (config.saved_value)."""
    keys = [*before, *(k for k in after if k not in before)]  # in saved order: reports stay stable
    a = recipe_fields({k: saved_value(before, k) for k in keys})
    b = recipe_fields({k: saved_value(after, k) for k in keys})
    new = [f"{k} {value_text(v)}" for k, v in b.items() if k not in a]
    return diff(a, b) + (["now also " + ", ".join(new)] if new else [])

"""How a report writes things: links relative to the report, table cells, numbers and epoch lists."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..challenge import fmt_acc
from .step import mean_std


def rel(target: Path, base: Path) -> str:
    """`target` relative to the folder `base`, in URL form (forward slashes, spaces escaped)."""
    return quote(rel_text(target, base))


def rel_text(target: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str, tight: bool = False) -> list[str]:
    """A markdown table, `align` an l or r per column; `tight`: no spaces in the separator row."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    sep = ["---:" if a == "r" else "---" for a in align]
    return [line(header), "|" + "|".join(sep) + "|" if tight else line(sep), *(line(row) for row in rows)]


def int_text(v: int | None) -> str:
    return f"{v:,}" if v is not None else "n/a"


def pct(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.2f}%"


def pp(v: float) -> str:
    """A signed difference in percentage points."""
    return f"{v:+.2f} pp"


def pm(values: Sequence[float], unit: str = "%", digits: int = 2) -> str:
    """'99.41%' for one value, '99.41 ± 0.03%' for several (sample std); a mean that two
    decimals would round across the target gets a third ('99.396 ± 0.04%')."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "n/a"
    mean_text = fmt_acc(m, digits) if unit == "%" else f"{m:.{digits}f}"
    spread = "" if s is None else f" ± {s:.{digits}f}"
    return f"{mean_text}{spread}{unit}"


def epoch_list(epochs: Sequence[int]) -> str:
    """[3, 5, 6, 7] -> '3, 5-7'."""
    runs = [[e for _, e in g] for _, g in groupby(enumerate(sorted(epochs)), lambda ie: ie[1] - ie[0])]
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def by_run(values: dict[str, Any]) -> str:
    """'3 (seed 1), 4 (seed 2)'."""
    return ", ".join(f"{v} ({label})" for label, v in values.items())

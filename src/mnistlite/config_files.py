"""Reading the TOML files that drive many runs (`experiment`, `tune`) and seed lists.

Every check raises a one-line MnistliteError naming the file (or the flag) and the fix, before anything trains.
"""

from __future__ import annotations

import difflib
import re
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .config import TrainConfig
from .errors import MnistliteError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a step or candidate name: it names a folder


def hint(key: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed document, or one line saying why not (`what`: 'experiment file', ...)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MnistliteError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MnistliteError(f"{path}: cannot read: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid TOML"
        raise MnistliteError(f"{path}: not valid TOML: {first}") from None


def check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise MnistliteError(f"{where}: unknown key {key!r}{hint(key, allowed)}; allowed: {', '.join(allowed)}")


def check_int(value: Any, where: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise MnistliteError(f"{where} must be an integer >= {least}, got {value!r}")
    return value


def check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MnistliteError(f"{where} must be a string, got {value!r}")
    return value.strip()


def field_types() -> dict[str, Any]:
    """TrainConfig field -> its plain type (bool, int, float or str; Optional unwrapped)."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: next(t for t in typing.get_args(h) or (h,) if t is not type(None)) for name, h in hints.items()}


def check_recipe(table: Any, where: str, forbidden: Mapping[str, str]) -> dict[str, Any]:
    """A recipe table: known TrainConfig fields with values of the right type; `forbidden`: field -> the fix."""
    if not isinstance(table, dict):
        raise MnistliteError(f"{where} must be a table of recipe fields, got {type(table).__name__}")
    types = field_types()
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in forbidden:
            raise MnistliteError(f"{where}: `{key}` cannot be set here; {forbidden[key]}")
        if key not in types:
            if key == "seeds":
                raise MnistliteError(f"{where}: `seeds` goes at the top level of the file (seeds = [1, 2])")
            raise MnistliteError(f"{where}: unknown recipe field {key!r}{hint(key, types)}")
        typ = types[key]
        # bool is an int to Python: only a bool field takes true or false
        if not isinstance(value, (int, float) if typ is float else typ) or (typ is not bool and type(value) is bool):
            want = {bool: "true or false", float: "a number", int: "an integer", str: "a string"}[typ]
            raise MnistliteError(f"{where}: recipe field {key!r} must be {want}, got {value!r}")
        out[key] = float(value) if typ is float else value
    return out


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    """The one seed-list rule, for a TOML list or --seed-list ("7,8,9"): distinct integers >= 0 (a seed names a
    folder, seed<k>, where `seed-1` would only confuse)."""
    if isinstance(value, str):
        try:
            value = [int(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise MnistliteError(f"{where} must be comma-separated integers >= 0, got {value!r}") from None
    if not isinstance(value, list) or not value or not all(type(s) is int and s >= 0 for s in value):
        raise MnistliteError(f"{where}: seeds must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise MnistliteError(f"{where}: seeds repeat: {value!r}")
    return tuple(value)

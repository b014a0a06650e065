"""`mnistlite init DIR`: a starter project in the seeds' style, with the user's own models."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import MnistliteError

STARTER = Path(__file__).resolve().parent.parent / "starter"


def register(sub) -> None:
    p = sub.add_parser(
        "init",
        help="create a starter project: two plain-torch models, an experiment file, a README",
        description="Write DIR/models/model_1.py and model_2.py (a baseline and one improved step), "
        "DIR/experiment.toml (the two as a progression) and DIR/README.md (the commands to train, "
        "compare and write the report). DIR must not exist yet, or be empty.",
    )
    p.add_argument("dir", metavar="DIR", help="folder to create")
    p.set_defaults(func=run)


def files() -> list[Path]:
    return sorted(p.relative_to(STARTER) for p in STARTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def run(args) -> None:
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MnistliteError(f"{out} already exists and is not an empty folder; choose another DIR")
    try:
        for rel in files():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STARTER / rel, out / rel)
    except OSError as e:
        raise MnistliteError(f"cannot write {out} ({e.strerror or e})") from None
    for rel in files():
        print(f"wrote {out / rel}")
    print(f"next: cd {out} && mnistlite experiment experiment.toml --dry-run")

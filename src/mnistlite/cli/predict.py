"""`mnistlite predict`: classify image files with a run directory, model.pt or .onnx."""

from __future__ import annotations

import json
import sys

from .common import add_model_arg, add_trust_code


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, ...) with a trained or exported model",
        description="Each image is prepared the way MNIST was made (grayscale, inverted when the background "
        "is light, cropped to the ink, fitted into 20x20, centred by mass in 28x28) and classified. "
        "Files that cannot be used get one line on stderr; the others are still classified; "
        "the exit code is then 2.",
    )
    add_model_arg(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    add_trust_code(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per image (failed files carry an 'error' key)",
    )


def run(args) -> int:
    from ..deploy.predict import load_predictor, predict_files

    predictor = load_predictor(args.model, trust_code=args.trust_code)
    entries = predict_files(predictor, args.images)
    failed = sum("error" in e for e in entries)
    for e in entries:
        if "error" in e:
            sys.stdout.flush()
            print(f"mnistlite predict: error: {e['file']}: {e['error']}", file=sys.stderr, flush=True)
        elif not args.json:
            top = ", ".join(f"{t['label']} {100 * t['prob']:.1f}%" for t in e["top"])
            print(f"{e['file']}: {e['label']}  ({top})")
    if args.json:
        keep = ("file", "digit", "label", "prob", "top", "probs", "error")
        print(json.dumps([{k: e[k] for k in keep if k in e} for e in entries], indent=2))
    sys.stdout.flush()
    return 2 if failed else 0

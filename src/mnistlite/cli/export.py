"""`mnistlite export`: a run's model.pt -> a verified ONNX file (optionally int8 too)."""

from __future__ import annotations

import json

from .common import add_trust_code, shipped_names


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX, verified against torch with onnxruntime",
        description="Export RUN_DIR/model.pt to ONNX (dynamic batch axis) and verify it with onnxruntime "
        "on 1,000 test images: fails unless every argmax agrees and logits differ by at most --atol.",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help=f"a run directory (or its model.pt), or a model with shipped weights ({shipped_names()})",
    )
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (only onnx)")
    p.add_argument("--out", metavar="FILE", help="output .onnx file (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset version (default 17)")
    p.add_argument(
        "--quantize",
        action="append",
        choices=["dynamic", "static"],
        default=[],
        help="also write an int8 model (onnxruntime.quantization) and report its test accuracy; repeatable",
    )
    p.add_argument("--atol", type=float, default=1e-3, help="max |logit difference| allowed (default 1e-3)")
    p.add_argument("--data-dir", metavar="DIR", help="data root for verification (default: the usual search)")
    add_trust_code(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> None:
    from ..deploy.export import export_run

    report = export_run(
        args.run_dir,
        args.out,
        opset=args.opset,
        quantize_modes=list(dict.fromkeys(args.quantize)),
        data_dir=args.data_dir,
        atol=args.atol,
        trust_code=args.trust_code,
        echo=(lambda s: None) if args.json else print,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))

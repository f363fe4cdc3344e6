"""`srgan-fast export`: a model to ONNX, checked in ONNX Runtime (weights.onnx)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from ..families import families

    x = sub.add_parser("export", help="export a model to ONNX (dynamic N/H/W, [0,1] I/O), checked in ONNX Runtime")
    x.add_argument("model", help=f"bundled model name or .safetensors path (any family: {', '.join(families())})")
    x.add_argument("out", help="the .onnx file to write")
    x.add_argument("--fp16", action="store_true", help="float16 weights and I/O (default float32)")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at least 11)")
    x.add_argument(
        "--tolerance", type=float, default=None,
        help="refuse the export when ONNX Runtime differs from the engine by more (max abs, [0,1] units; "
        "default 1e-4 fp32, 1e-2 fp16)",
    )  # fmt: skip
    x.set_defaults(func=run)


def run(args) -> int:
    from ..weights.onnx import export

    path, diff = export(args.model, args.out, fp16=args.fp16, opset=args.opset, tolerance=args.tolerance)
    print(f"{path}: ONNX Runtime vs engine (torch backend, fp32), max abs diff {diff:.3g}")
    return 0

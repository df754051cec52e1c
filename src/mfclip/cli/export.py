"""``mfclip export --model DIR --onnx OUT.onnx``: the inference path as an ONNX graph."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _batch(value: str) -> int | None:
    """``dynamic`` -> ``None`` (dynamic batch axis), else a positive fixed batch size."""
    if value.lower() == "dynamic":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'dynamic' or a positive integer, got {value!r}"
        ) from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"batch size must be positive, got {size}")
    return size


def _export(args: argparse.Namespace) -> int:
    from ..export import export_onnx

    try:
        result = export_onnx(
            args.model,
            args.onnx,
            opset=args.opset,
            batch_size=args.batch,
            verify=not args.no_verify,
            atol=args.atol,
        )
    except ImportError as exc:  # the CLI reports RuntimeErrors as one line, not a traceback
        raise RuntimeError(str(exc)) from exc
    batch = "dynamic" if result.batch_size is None else str(result.batch_size)
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, "
        f"batch {batch}): {result.metadata['input'].split(':')[0]} -> "
        f"{', '.join(result.outputs)}; threshold {float(result.metadata['threshold']):.3f}"
    )
    if result.max_abs_diff is not None:
        boxes = "" if result.boxes_equal is None else ", boxes identical"
        print(
            f"checked with ONNX Runtime: max |p_onnx - p_torch| = {result.max_abs_diff:.2e}{boxes}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a saved model's inference path to ONNX",
        description=(
            "Export image -> fake probability (and the richest-patch box) to ONNX, with the "
            "threshold and preprocessing stored as metadata; run it with "
            "mfclip.export.OnnxDetector (numpy, Pillow, onnxruntime). Needs the onnx extra: "
            "pip install 'mfclip[onnx]'."
        ),
    )
    p.add_argument("--model", required=True, help="saved model directory (or training run folder)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--batch",
        type=_batch,
        default=None,
        metavar="dynamic|N",
        help="'dynamic' (default) for a dynamic batch axis, or a fixed batch size",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the ONNX Runtime vs PyTorch check of the written file",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest probability difference the check accepts (default 1e-4)",
    )
    p.set_defaults(func=_export)

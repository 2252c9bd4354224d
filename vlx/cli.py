"""The ``vlx`` command. Parsing stays import-light; each command imports what it uses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

METHOD_NAMES = (
    "gradcam",
    "counterfactual",
    "guided-backprop",
    "deconvolution",
    "guided-gradcam",
    "occlusion",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for bad input, with one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    from vlx.errors import InputError

    try:
        return args.run(args)
    except InputError as err:
        print(f"vlx {args.command}: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlx",
        description="Visual explanations (Grad-CAM, Guided Grad-CAM, ...) of vision models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_explain(commands)
    return parser


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    for method in methods:
        if method not in METHOD_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown method {method!r}; valid methods: {', '.join(METHOD_NAMES)}"
            )
    return methods


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain an image classifier's predictions",
        description="Explain what an image classifier sees: prints the top-k predictions and "
        "writes one PNG per (image, method, target) plus a grid per image.",
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    explain.add_argument(
        "--demo", action="store_true", help="explain the bundled cat and coffee photos"
    )
    explain.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0 (default, ImageNet), a torchvision name, timm:NAME, "
        "hf:PATH or module:attribute",
    )
    explain.add_argument("--layer", help="dotted name of the layer to explain")
    explain.add_argument(
        "--target",
        nargs="+",
        default=None,
        metavar="NAME_OR_INDEX",
        help="classes to explain (names or indices); default: each image's top class",
    )
    explain.add_argument("--top-k", type=int, default=5, help="predictions to print (5)")
    explain.add_argument(
        "--method",
        type=_methods,
        default=["gradcam"],
        help=f"comma-separated methods: {','.join(METHOD_NAMES)} (gradcam)",
    )
    explain.add_argument("--out", default="vlx-out", help="output folder (vlx-out)")
    explain.add_argument("--device", default="cpu", help="cpu or cuda")
    explain.add_argument("--json", action="store_true", help="print a JSON summary")
    explain.add_argument("--list-classes", action="store_true", help="print class names and exit")
    explain.set_defaults(run=_lazy("vlx.commands.explain"))


def _lazy(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).run(args)

    return run


def print_json(summary: dict) -> None:
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    raise SystemExit(main())

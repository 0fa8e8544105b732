"""The ``cnnlab`` command.

cnnlab doctor       what this machine has, and what is broken
cnnlab build-ops    build the custom convolution op ahead of time
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _doctor(_args: argparse.Namespace) -> int:
    from cnnlab import doctor  # noqa: PLC0415

    return doctor.main()


def _build_ops(args: argparse.Namespace) -> int:
    from cnnlab.ops import build  # noqa: PLC0415

    try:
        path = build.build(force=args.force, gpu=args.gpu)
    except build.BuildError as error:
        print(f"cnnlab build-ops: {error}", file=sys.stderr)
        return 1
    print(f"custom op ready: {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cnnlab", description="cnnlab: coursework on convolutional neural networks"
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="check Python, TensorFlow, compilers, data and the custom op")
    doctor.set_defaults(run=_doctor)

    build_ops = commands.add_parser("build-ops", help="compile the custom convolution op into the cache")
    build_ops.add_argument("--force", action="store_true", help="rebuild even when the cache holds a build")
    build_ops.add_argument(
        "--gpu",
        choices=["auto", "yes", "no"],
        default="auto",
        help="build the CUDA kernels: auto (when nvcc and a CUDA build of TensorFlow are present), yes, no",
    )
    build_ops.set_defaults(run=_build_ops)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

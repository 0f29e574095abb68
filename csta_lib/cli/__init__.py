"""The ``csta`` command line.

Each command group lives in its own module of this package and exposes ``register(subparsers)``,
which adds its sub-command(s) and sets ``func`` (a callable taking the parsed ``argparse.Namespace``
and returning an exit code). Heavy libraries (torch, h5py) are imported inside the command
functions, not at module import, so ``csta --help`` stays fast.

Exit codes: 0 success, 1 internal error, 2 bad input (missing file, bad argument, invalid data).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from csta_lib import __version__

# Modules of this package that provide commands, in the order --help lists them.
COMMAND_MODULES = ("data", "model", "evaluate", "train", "results", "grid", "summarize")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2


_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP)


class BadInput(Exception):
    """Raised by commands for user errors; reported without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available command group registered."""
    parser = argparse.ArgumentParser(
        prog="csta",
        description="CSTA (CVPR 2024) reference implementation: data, model, evaluation, training, "
        "experiment grids and video summaries.",
    )
    parser.add_argument("--version", action="version", version=f"csta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"csta_lib.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"csta_lib.cli.{name}":
                continue  # command group not present in this build
            raise
        module.register(sub)
    return parser


def _is_bad_input(exc: BaseException) -> bool:
    from csta_lib.errors import CstaInputError

    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return True  # a full disk, a read-only file system, a name too long: not a bug of ours
    return isinstance(exc, (BadInput, CstaInputError, FileNotFoundError, PermissionError))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``csta`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("csta: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        if _is_bad_input(exc):
            print(f"csta {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

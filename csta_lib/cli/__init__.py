"""The ``csta`` command line.

Each command group lives in its own module of this package and exposes ``register(subparsers)``,
which adds its sub-command(s) and sets ``func`` (a callable taking the parsed ``argparse.Namespace``
and returning an exit code). Building the parser imports nothing heavy: whatever pulls in torch (the
model, training, grids, videos) is imported inside the command functions, so ``csta --help``,
``csta <cmd> --help`` and argument errors answer at once.

Exit codes: 0 success, 1 internal error, 2 bad input (missing file, bad argument, invalid data, a missing
optional extra).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from csta_lib import __version__
from csta_lib.errors import CstaInputError

# Modules of this package that provide commands, in the order --help lists them.
COMMAND_MODULES = ("data", "model", "evaluate", "train", "results", "grid", "summarize")

EXIT_BAD_INPUT = 2

#: The optional packages csta_lib imports (top-level module name) -> the extra of pyproject.toml that installs
#: them. `pip install csta-book` gives the method and the command line's core; a command that needs one of these
#: says which extra to add (tests/test_packaging.py checks this table against the imports and pyproject.toml).
EXTRAS = {
    "papermill": "book", "myst_nb": "book", "matplotlib": "book", "seaborn": "book", "pandas": "book",
    "ipywidgets": "book", "yaml": "book", "sphinx": "book", "docutils": "book", "pybtex": "book", "IPython": "book",
    "av": "video", "ai_edge_litert": "video",
    "ray": "ray",
    "websocket": "dev",
}

_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="csta",
        description="CSTA (CVPR 2024) reference implementation: data, model, evaluation, training, "
        "experiment grids and video summaries.",
    )
    parser.add_argument("--version", action="version", version=f"csta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"csta_lib.cli.{name}").register(sub)
    return parser


def missing_extra(exc: BaseException) -> str | None:
    """What to install when ``exc`` says that an optional package is missing (None: it says something else)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.partition(".")[0]
    extra = EXTRAS.get(module)
    return f"{module!r} is not installed: pip install 'csta-book[{extra}]'" if extra else None


def _is_bad_input(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return True  # a full disk, a read-only file system, a name too long: not a bug of ours
    return isinstance(exc, (CstaInputError, FileNotFoundError, PermissionError))


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
        message = missing_extra(exc) or (str(exc) if _is_bad_input(exc) else None)
        if message is None:
            raise
        print(f"csta {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

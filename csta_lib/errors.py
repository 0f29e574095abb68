"""Exceptions for user-facing errors.

Everything a user can cause (a missing file, a malformed h5, a bad argument) raises a subclass of
:class:`CstaInputError` with a message that names the file, video or key at fault. The CLI turns
these into exit code 2 without a traceback; anything else is an internal error (exit code 1).
"""

from __future__ import annotations


class CstaInputError(ValueError):
    """Bad input: the message says what is wrong and where."""


class MissingDataError(CstaInputError, FileNotFoundError):
    """A data file (dataset, annotation, weights, video) was not found in any searched location."""


class DataFormatError(CstaInputError):
    """A data file exists but is not in the expected format (wrong type, keys, shapes, NaN, ...)."""


class ConfigError(CstaInputError):
    """An impossible or unknown configuration (unknown preset, conflicting switches, ...)."""


class DiskFullError(CstaInputError, OSError):
    """The disk (or quota) filled up while writing an output; nothing partial was left behind."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty): library errors (h5py, torch) can
    carry pages of text, and our messages stay one line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

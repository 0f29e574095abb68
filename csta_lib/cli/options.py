"""Argument pieces shared by several commands: numbers whose range the library checks, the KTS shot options
(``csta summarize`` and ``csta data build`` cut shots the same way, from one set of settings)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from csta_lib.runs.video.shots import DEFAULT_SHOTS, ShotSettings  # imports no PyAV (the package resolves lazily)


def number(expected: str) -> Callable[[str], float]:
    """An argparse type: any float; its range is checked by the library, with the same message everywhere."""
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse


def add_shot_arguments(parser: argparse.ArgumentParser) -> None:
    """``--min-shot-seconds``, ``--max-shot-seconds`` and ``--shot-penalty``, defaults from
    :data:`~csta_lib.runs.video.shots.DEFAULT_SHOTS`."""
    seconds = number("seconds >= 0")
    group = parser.add_argument_group("shots", "how KTS cuts each video into shots")
    group.add_argument("--min-shot-seconds", type=seconds, default=DEFAULT_SHOTS.min_shot_seconds, metavar="S",
                       help=f"no shot shorter than S seconds (default {DEFAULT_SHOTS.min_shot_seconds:g}; 0: no "
                       "minimum)")
    group.add_argument("--max-shot-seconds", type=seconds, default=DEFAULT_SHOTS.max_shot_seconds, metavar="S",
                       help=f"no shot longer than S seconds (default {DEFAULT_SHOTS.max_shot_seconds or 0:g}; 0: no "
                       "maximum)")
    group.add_argument("--shot-penalty", type=number("a penalty > 0"), default=DEFAULT_SHOTS.vmax, metavar="V",
                       help=f"KTS's penalty per cut, vmax (default {DEFAULT_SHOTS.vmax:g}: cuts where the content "
                       "really changes; 1 with --min-shot-seconds 0 --max-shot-seconds 0 is the official "
                       "custom-video setting, many short shots)")


def shot_settings(args: Any) -> ShotSettings:
    """The :class:`~csta_lib.runs.video.shots.ShotSettings` of parsed :func:`add_shot_arguments` options."""
    return ShotSettings(vmax=args.shot_penalty, min_shot_seconds=args.min_shot_seconds,
                        max_shot_seconds=args.max_shot_seconds or None)

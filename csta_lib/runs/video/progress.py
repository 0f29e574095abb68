"""Progress bars of the video stages (decode, encode, write): one tqdm bar on stderr per stage, or nothing."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar on stderr for one stage (or nothing when not ``enabled``); ``total`` may be unknown."""

    def __init__(self, enabled: bool, desc: str, total: int | None, unit: str = "frame") -> None:
        self._bar = None
        if enabled:
            # Imported only when bars are shown: --quiet and library callers skip its start-up cost.
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True, mininterval=0.2)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

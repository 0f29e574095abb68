"""How the summary video is encoded (H.264 by libx264): the presets, the default, the quality.

A module of its own, without PyAV, so that ``csta summarize --help`` can show the default.
``superfast`` is the default: on the trailer's selected shots (854x480) it encodes in half the time of
``veryfast`` (0.37-0.41 s vs 0.79 s for 120 frames on a 2-core AMD EPYC) at the same quality (PSNR against
the decoded source 42.0 vs 41.7 dB at CRF 23), for a file about a third larger (773 vs 584 KiB).
"""

from __future__ import annotations

#: libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: The default preset (see the module docstring).
X264_PRESET = "superfast"
#: Constant rate factor: x264's own default quality.
X264_CRF = "23"

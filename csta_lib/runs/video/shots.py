"""Shots of a video: kernel temporal segmentation (KTS) on the sampled frames' features, at human lengths.

KTS runs on the sampled features (the official code runs it on every frame: O(n²) memory, O(n³) time),
on L2-normalised features so that the linear kernel is a cosine similarity, with the penalty of the
full-length video (``desc_rate`` = stride, as if every frame had been segmented). Change points are mapped
back to the frames of the samples (``picks``), and the shots cover every frame of the video (book method
page, method-kts).

**How long shots are** (:class:`ShotSettings`, the one home of these settings: ``csta summarize`` and
``csta data build`` both use them). The official custom-video setting (penalty weight ``vmax = 1``, up to
one boundary per step) cuts at nearly every change of content: on the Big Buck Bunny trailer (32.5 s, 55
steps) it gave 29 shots, 1.1 s on average, the last one 0.08 s, and a 15 % summary of seven shots, six of
them 0.6 s long, a summary of flashes. The eccv16 files' shots, on which every checkpoint is trained, are
longer: in the SumMe file (its real change points are in the mirror's eccv16 fields) they last 5.4 s on
average (median 4.5 s; 10 % are under 2.0 s, 90 % under 9.4 s). Three settings bring custom videos there:

- ``vmax = 5``: a cut must pay for itself five times more, so KTS cuts where the content really changes.
  With the MobileNet encoder every clip below has the same shots for every ``vmax`` from 5 to 7 (at 4 the
  trailer gains two, at 8 bikes and the generated clip lose theirs), so the choice is not on a knife's edge.
- ``min_shot_seconds = 1``: KTS's minimal segment length (in steps, rounded up), and a shot left shorter
  at the video's end (its last step holds fewer frames) is merged into its neighbour: no flashes.
- ``max_shot_seconds = 10`` (about the eccv16 shots' 90th percentile): KTS's maximal segment length, so
  that long continuous footage still comes in pieces a summary can choose from.

Measured with the MobileNet encoder, mean shot length (shots) with the official setting -> with these:
trailer 1.12 s (29) -> 2.71 s (12), mallard 1.65 s (14) -> 4.62 s (5), bikes 0.77 s (13) -> 2.00 s (5),
bigbuckbunny 2.64 s (2) -> 5.28 s (1: it is one continuous shot), carphone 4.0 s (1) -> 4.0 s (1), and a
generated clip of four solid-colour shots 2.40 s (4) -> 2.40 s (4, at its three cuts). The trailer's twelve
shots start at 4.2, 7.2, 9.6, 11.4, 13.2, 16.8, 19.2, 23.4, 25.2, 27.0 and 30.0 s: every one a title card or
a scene change a viewer sees. It is a trailer, cut faster than the SumMe videos, hence shots shorter than
their 5 s. ``ShotSettings(vmax=1, min_shot_seconds=0, max_shot_seconds=None)`` is the official setting.
The penalty was calibrated on MobileNet features; GoogLeNet pool5 features are also non-negative averages
(cosine similarities on a similar scale), but with its ImageNet weights absent here that is not measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from csta_lib import kts
from csta_lib.errors import ConfigError

if TYPE_CHECKING:  # the type only: importing features would import PyAV, and the CLI reads DEFAULT_SHOTS for --help
    from csta_lib.runs.video.features import EncodedVideo


@dataclass(frozen=True)
class ShotSettings:
    """How KTS cuts a video into shots: the one home of these settings (summaries and built datasets)."""

    #: KTS's penalty weight per change point: 1 in the official code, which on sampled features cuts at
    #: nearly every change of content; 5 cuts where the content really changes (see the module docstring).
    vmax: float = 5.0
    #: No shot shorter than this (seconds; 0: no minimum).
    min_shot_seconds: float = 1.0
    #: No shot longer than this (seconds; None: no maximum): long continuous footage is still cut into
    #: pieces a summary can choose from, as the eccv16 files cut theirs.
    max_shot_seconds: float | None = 10.0

    def __post_init__(self) -> None:
        _check_seconds("vmax", self.vmax, positive=True)
        _check_seconds("min_shot_seconds", self.min_shot_seconds, positive=False)
        if self.max_shot_seconds is not None:
            _check_seconds("max_shot_seconds", self.max_shot_seconds, positive=True)
            if self.max_shot_seconds < self.min_shot_seconds:
                raise ConfigError(f"shot setting max_shot_seconds ({self.max_shot_seconds:g}) must be at least "
                                  f"min_shot_seconds ({self.min_shot_seconds:g})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ShotSettings:
        """The settings :meth:`as_dict` wrote (a sidecar's or a built file's ``shot_settings``)."""
        unknown = sorted(set(settings) - set(asdict(DEFAULT_SHOTS)))
        if unknown:
            raise ConfigError(f"unknown shot setting(s) {', '.join(unknown)}; known: "
                              f"{', '.join(asdict(DEFAULT_SHOTS))}")
        return cls(**settings)

    def text(self) -> str:
        """The settings in words, for legends and captions: ``KTS penalty 5, shots 1-10 s``."""
        longest = "no maximum" if self.max_shot_seconds is None else f"at most {self.max_shot_seconds:g} s"
        return f"KTS penalty weight {self.vmax:g}, shots at least {self.min_shot_seconds:g} s and {longest}"

    def limits(self, n_steps: int, fps: float, stride: int) -> tuple[int, int, int, int]:
        """``(max_change_points, min_steps, max_steps, min_frames)``: the settings in steps and frames for a
        video of ``n_steps`` samples at a mean rate of ``fps``, sampled about every ``stride`` frames.

        Where both bounds cannot hold in whole steps, the minimum gives way: at most half the maximum (rounded
        up), so that segments of ``min_steps .. max_steps`` steps can tile any number of steps.
        """
        min_steps = max(1, math.ceil(self.min_shot_seconds * fps / stride - 1e-9))
        max_steps = kts.DEFAULT_LMAX
        if self.max_shot_seconds is not None:
            max_steps = max(1, math.floor(self.max_shot_seconds * fps / stride + 1e-9))
            min_steps = min(min_steps, (max_steps + 1) // 2)
        min_frames = min(math.ceil(self.min_shot_seconds * fps - 1e-9), min_steps * stride)
        most = max(0, min(n_steps // min_steps - 1, n_steps - 1))  # KTS fits no more segments of min_steps
        return most, min_steps, max_steps, min_frames

    def fitting(self, budget_seconds: float) -> ShotSettings | None:
        """These settings with every shot short enough for a summary of ``budget_seconds`` (the longest shot
        that budget, the shortest at most half of it); None when even a shortest shot would not fit."""
        if budget_seconds < self.min_shot_seconds:
            return None
        longest = budget_seconds if self.max_shot_seconds is None else min(self.max_shot_seconds, budget_seconds)
        return ShotSettings(self.vmax, min(self.min_shot_seconds, longest / 2), longest)


def _check_seconds(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise ConfigError(f"shot setting {name} must be a finite number {'> 0' if positive else '>= 0'}, "
                          f"got {value!r}")


#: The settings of ``csta summarize`` and ``csta data build`` unless told otherwise.
DEFAULT_SHOTS = ShotSettings()


def merge_short_shots(shots: np.ndarray, min_frames: int) -> np.ndarray:
    """``shots`` with every shot of fewer than ``min_frames`` frames merged into its shorter neighbour."""
    merged = [[int(s), int(e)] for s, e in np.asarray(shots, np.int64).reshape(-1, 2)]
    while len(merged) > 1:
        lengths = [e - s + 1 for s, e in merged]
        k = int(np.argmin(lengths))
        if lengths[k] >= min_frames:
            break
        if k == 0 or (k < len(merged) - 1 and lengths[k + 1] < lengths[k - 1]):
            merged[k:k + 2] = [[merged[k][0], merged[k + 1][1]]]
        else:
            merged[k - 1:k + 1] = [[merged[k - 1][0], merged[k][1]]]
    return np.asarray(merged, np.int64).reshape(-1, 2)


def shots_from_features(features: np.ndarray, picks: np.ndarray, n_frames: int, stride: int, *,
                        fps: float | None = None, settings: ShotSettings = DEFAULT_SHOTS) -> np.ndarray:
    """KTS shots (S, 2): inclusive frame ranges covering ``0 .. n_frames-1``, from the sampled frames' features.

    KTS sees the L2-normalised features (a cosine kernel, on the scale its ``vmax`` penalty assumes, as
    DSNet and the official helper normalise theirs), with the penalty of a video of ``n_frames`` frames
    sampled every ``stride`` frames and the limits of ``settings`` (:meth:`ShotSettings.limits`: seconds
    turned into frames at ``fps``, the video's mean frame rate, ``n_frames / duration``). A change point at
    step ``c`` starts a shot at frame ``picks[c]``. :func:`video_shots` does this for an encoded video.
    """
    if fps is None or not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"shots_from_features needs fps= (the video's mean frame rate, to turn the shot settings' "
                         f"seconds into frames), got {fps!r}; video_shots(encoded) passes it")
    features = np.asarray(features, np.float64)
    picks = np.asarray(picks, np.int64)
    if len(picks) != len(features):
        raise ValueError(f"{len(picks)} picks for {len(features)} step features")
    max_change_points, min_steps, max_steps, min_frames = settings.limits(len(features), fps, stride)
    if max_change_points == 0:
        return np.array([[0, n_frames - 1]], np.int64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    # desc_rate: the penalty counts the video's frames, not its samples, as if KTS ran on every frame
    # (the official custom-video path does; on n/stride samples the per-cut penalty would be stride
    # times larger and short videos would get no cut at all).
    step_cps = kts.change_points(unit, max_change_points, vmax=settings.vmax, desc_rate=stride, lmin=min_steps,
                                 lmax=max_steps)
    starts = picks[np.asarray(step_cps, np.int64)]  # the frames where the shots after the first start
    shots = kts.shots_from_change_points(starts, n_frames, frame_step=1).astype(np.int64)
    return merge_short_shots(shots, min_frames)  # the last step may hold fewer than stride frames


def video_shots(encoded: EncodedVideo, settings: ShotSettings = DEFAULT_SHOTS) -> np.ndarray:
    """KTS shots of an encoded video under ``settings``
    (:func:`shots_from_features` at the video's mean frame rate)."""
    sampled = encoded.sampled
    return shots_from_features(encoded.features, sampled.picks, sampled.n_frames, sampled.stride,
                               fps=sampled.n_frames / sampled.duration_s, settings=settings)


def split_long_shots(encoded: EncodedVideo, shots: np.ndarray, settings: ShotSettings) -> np.ndarray:
    """``shots`` with every shot longer than ``settings.max_shot_seconds`` cut again by KTS on its own steps
    (under ``settings``); the other shots, and so every boundary found before, stay."""
    sampled = encoded.sampled
    fps = sampled.n_frames / sampled.duration_s
    pieces = []
    for start, end in np.asarray(shots, np.int64).reshape(-1, 2):
        steps = np.flatnonzero((sampled.picks >= start) & (sampled.picks <= end))
        seconds = sampled.frame_ends[end] - sampled.frame_times[start]
        if settings.max_shot_seconds is None or seconds <= settings.max_shot_seconds or len(steps) < 2:
            pieces.append(np.array([[start, end]], np.int64))
            continue
        inner = shots_from_features(encoded.features[steps], sampled.picks[steps] - start, int(end - start + 1),
                                    sampled.stride, fps=fps, settings=settings)
        pieces.append(inner + start)
    return np.concatenate(pieces)

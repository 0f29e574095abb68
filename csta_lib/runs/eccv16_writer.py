"""Writing eccv16 files: the one writer of the layout :func:`csta_lib.data.eccv16.load_eccv16` reads, and the
formulas that derive its annotation fields.

Two builders use it: the surrogate files (:mod:`csta_lib.runs.surrogate`: real annotation fields, synthetic
features) and user datasets (:mod:`csta_lib.runs.dataset_build`: a user's videos and annotations). The file is a
function of its inputs alone: fields are written in one fixed order with the dtypes of the published eccv16
files (``features``/``gtscore`` float32, ``user_summary`` uint8, ``change_points``/``n_frame_per_seg``/``picks``
int32, ``n_frames``/``n_steps`` int32 scalars, ``video_name`` a string), no timestamps (``track_times=False``),
attributes in the order given, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from csta_lib.evaluation import SUMMARY_BUDGET, knapsack, shot_scores


@dataclass(frozen=True, eq=False)
class VideoFields:
    """Every eccv16 field of one video except ``features`` (``gtsummary`` and ``user_scores`` optional)."""

    key: str
    gtscore: np.ndarray  # (T,) float32
    user_summary: np.ndarray  # (U, n_frames) uint8
    change_points: np.ndarray  # (S, 2) int32, inclusive
    n_frame_per_seg: np.ndarray  # (S,) int32
    n_frames: int
    picks: np.ndarray  # (T,) int32
    video_name: str
    gtsummary: np.ndarray | None = None  # (T,) float32
    user_scores: np.ndarray | None = None  # (U, n_frames) float32: raw annotator scores


def video_fields(key: str, gtscore: Any, user_summary: Any, change_points: Any, n_frames: int, picks: Any,
                 name: str, *, gtsummary: Any = None, user_scores: Any = None) -> VideoFields:
    """:class:`VideoFields` with the eccv16 dtypes and ``n_frame_per_seg`` derived from the shots."""
    cps = np.asarray(change_points, dtype=np.int32)
    return VideoFields(key=key, gtscore=np.asarray(gtscore, dtype=np.float32),
                       user_summary=np.asarray(user_summary, dtype=np.uint8), change_points=cps,
                       n_frame_per_seg=(cps[:, 1] - cps[:, 0] + 1).astype(np.int32), n_frames=int(n_frames),
                       picks=np.asarray(picks, dtype=np.int32), video_name=name,
                       gtsummary=None if gtsummary is None else np.asarray(gtsummary, dtype=np.float32),
                       user_scores=None if user_scores is None else np.asarray(user_scores, dtype=np.float32))


# --------------------------------------------------------------------------------------------
# formulas of the annotation fields (book method page, method-input)


def scaled_mean_gtscore(user_scores: np.ndarray, picks: np.ndarray, low: float, high: float) -> np.ndarray:
    """The eccv16 TVSum target on any scale: (mean over annotators of the scores at ``picks`` − ``low``) /
    (``high`` − ``low``), float32; with TVSum's scale 1..5 this is the published ``(mean − 1) / 4``."""
    return ((user_scores[:, picks].mean(axis=0) - low) / (high - low)).astype(np.float32)


def selected_fraction_gtscore(user_summary: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The eccv16 SumMe target: the fraction of annotators who selected each sampled frame (``gt_score[::15]``)."""
    return (np.asarray(user_summary, np.float64) > 0)[:, picks].mean(axis=0).astype(np.float32)


def knapsack_user_summaries(user_scores: np.ndarray, change_points: np.ndarray, n_frames: int,
                            budget: float = SUMMARY_BUDGET) -> np.ndarray:
    """Each user's summary: the 0/1 knapsack of shots (value = the shot's mean score,
    :func:`~csta_lib.evaluation.shot_scores`; weight = length) under ``floor(budget · n_frames)`` frames,
    as a (U, n_frames) uint8 array: how the eccv16 TVSum file's user summaries were made.

    The user scores are already per frame, so :func:`~csta_lib.evaluation.generate_summary` (which first
    upsamples step scores to float32 frame scores) is not used: its float32 shot means would change about
    one TVSum user summary in eleven, and with them the surrogate files' bytes.
    """
    lengths = (change_points[:, 1] - change_points[:, 0] + 1).astype(np.int64)
    capacity = int(n_frames * budget)
    summaries = np.zeros((user_scores.shape[0], n_frames), dtype=np.uint8)
    for user, scores in enumerate(user_scores):
        chosen = knapsack(shot_scores(scores, change_points), lengths, capacity)
        summaries[user, np.repeat(chosen, lengths)] = 1
    return summaries


# --------------------------------------------------------------------------------------------
# the file


def _dataset(group: h5py.Group, name: str, value: Any) -> None:
    group.create_dataset(name, data=value, track_times=False)


def write_eccv16(path: str | os.PathLike[str], attrs: Mapping[str, Any],
                 videos: Iterable[tuple[VideoFields, np.ndarray]]) -> None:
    """Write an eccv16 file at ``path`` (in place: callers wanting atomicity pass a temporary, as
    :func:`~csta_lib.runs.io.atomic_path` gives): the file attributes ``attrs`` in their order, then one group per
    ``(fields, features)`` pair in the order given (features are taken one video at a time, so a generator keeps
    only one video's features in memory)."""
    with h5py.File(path, "w") as h5:
        for name, value in attrs.items():
            h5.attrs[name] = value
        for fields, features in videos:
            group = h5.create_group(fields.key)
            _dataset(group, "features", np.asarray(features, dtype=np.float32))
            _dataset(group, "gtscore", fields.gtscore)
            _dataset(group, "user_summary", fields.user_summary)
            _dataset(group, "change_points", fields.change_points)
            _dataset(group, "n_frame_per_seg", fields.n_frame_per_seg)
            _dataset(group, "n_frames", np.int32(fields.n_frames))
            _dataset(group, "n_steps", np.int32(len(fields.picks)))
            _dataset(group, "picks", fields.picks)
            _dataset(group, "video_name", fields.video_name)
            if fields.gtsummary is not None:
                _dataset(group, "gtsummary", fields.gtsummary)
            if fields.user_scores is not None:
                _dataset(group, "user_scores", fields.user_scores)

"""Shots of a video: kernel temporal segmentation (KTS) on the sampled frames' features.

KTS runs on the sampled features (the official code runs it on every frame: O(n²) memory, O(n³) time),
on L2-normalised features so that the linear kernel is a cosine similarity on the scale its ``vmax=1``
penalty assumes, with the penalty of the full-length video (``desc_rate`` = stride, as if every frame had
been segmented; on the samples alone the per-cut penalty is ``stride`` times larger and short videos get
no cut at all). Change points are mapped back to the frames of the samples (``picks``), and the shots
cover every frame of the video (book method page, method-kts).
"""

from __future__ import annotations

import numpy as np

from csta_lib import kts


def shots_from_features(features: np.ndarray, picks: np.ndarray, n_frames: int, stride: int) -> np.ndarray:
    """KTS shots (S, 2): inclusive frame ranges covering ``0 .. n_frames-1``, from the sampled frames' features.

    KTS sees the L2-normalised features (a cosine kernel, on the scale its ``vmax=1`` penalty assumes,
    as DSNet and the official helper normalise theirs), with at most one boundary per step (DSNet's
    custom-video setting) and the penalty of a video of ``n_frames`` frames sampled every ``stride``
    frames. A change point at step ``c`` starts a shot at frame ``picks[c]``.
    """
    features = np.asarray(features, np.float64)
    picks = np.asarray(picks, np.int64)
    if len(picks) != len(features):
        raise ValueError(f"{len(picks)} picks for {len(features)} step features")
    if len(features) < 2:
        return np.array([[0, n_frames - 1]], np.int64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    # desc_rate: the penalty counts the video's frames, not its samples, as if KTS ran on every frame
    # (the official custom-video path does; on n/stride samples the per-cut penalty would be stride
    # times larger and short videos would get no cut at all).
    step_cps = kts.change_points(unit, len(features) - 1, vmax=1.0, desc_rate=stride)
    starts = picks[np.asarray(step_cps, np.int64)]  # the frames where the shots after the first start
    return kts.shots_from_change_points(starts, n_frames, frame_step=1).astype(np.int64)

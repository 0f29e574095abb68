"""Scores and the selected shots: the checkpoint's CSTA model scores the steps, the official summary
generation picks the shots.

The model scores the (unnormalised) step features, and the official summary generation (book method page,
method-summary: scores spread over frames, mean score per shot, 0/1 knapsack at ``floor(budget * n_frames)``
frames) picks the shots. On a VFR video a shot's knapsack weight is its real duration in units of the mean
frame duration (on a constant-rate video that is its frame count, the official weight), so that the budget
is a fraction of the video's *time*. A budget smaller than every shot is an error asking for a larger
budget, not an empty video.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from csta_lib.errors import CstaInputError
from csta_lib.evaluation import frame_scores, generate_summary, shot_scores
from csta_lib.runs.video.sampling import SampledVideo


class NoShotFitsError(CstaInputError):
    """The budget is smaller than every shot: the knapsack keeps nothing."""


def score_steps(model: Any, features: np.ndarray) -> np.ndarray:
    """CSTA importance scores (T,) of the step features (any T >= 1: the model pads short videos itself)."""
    # torch is first imported by the model's loading thread (see pipeline.load_model); importing it with this
    # module would hold up decoding at start-up.
    import torch

    device = next(model.parameters()).device  # where the model was put (summarize's --device)
    with torch.inference_mode():
        scores = model(torch.from_numpy(np.ascontiguousarray(features, np.float32)).to(device))
    scores = scores.detach().float().reshape(-1).cpu().numpy()
    if scores.shape != (len(features),):
        raise RuntimeError(f"model returned scores of shape {scores.shape} for {len(features)} steps")
    if not np.isfinite(scores).all():  # a checkpoint with NaN/inf weights: the user's file, not a bug
        raise CstaInputError("the checkpoint's model gives non-finite scores (NaN or inf) on this video: "
                             "its weights are not usable")
    return scores.astype(np.float64)


def shot_weights(shots: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Knapsack weights (S,) of inclusive frame ``shots``: real duration in mean frame durations (>= 1).

    On a constant-rate video this is each shot's frame count; on a variable-rate one it makes the
    budget a fraction of the video's time rather than of its frames.
    """
    shots = np.asarray(shots, np.int64).reshape(-1, 2)
    mean = (float(ends[-1]) - float(starts[0])) / len(starts)
    durations = ends[shots[:, 1]] - starts[shots[:, 0]]
    return np.maximum(1, np.round(durations / mean)).astype(np.int64)


def select_shots(scores: np.ndarray, shots: np.ndarray, sampled: SampledVideo,
                 budget: float) -> tuple[np.ndarray, np.ndarray]:
    """``(shot scores (S,), kept (S,) bool)``: the official summary generation at ``budget`` (method page,
    method-summary). On a variable-rate video the knapsack weighs each shot by its real duration
    (:func:`shot_weights`), so that the budget is a fraction of the video's time. Keeping no shot is an error.
    """
    n_frames, picks = sampled.n_frames, sampled.picks
    values = shot_scores(frame_scores(scores, picks, n_frames), shots)
    weights = shot_weights(shots, sampled.frame_times, sampled.frame_ends) if sampled.variable_frame_rate else None
    kept = generate_summary(scores, shots, n_frames, picks, budget, weights=weights)[shots[:, 0]].astype(bool)
    if not kept.any():
        raise NoShotFitsError(_no_shot_fits(budget, shots, sampled, weights))
    return values, kept


def _no_shot_fits(budget: float, shots: np.ndarray, sampled: SampledVideo, weights: np.ndarray | None) -> str:
    """The error message when the knapsack keeps nothing: the budget and the shortest shot."""
    n = sampled.n_frames
    lengths = shots[:, 1] - shots[:, 0] + 1 if weights is None else weights
    zero = " (or every score is 0)" if int(lengths.min()) <= int(n * budget) else ""
    if weights is None:
        size = f"{budget:.0%} of {n} frames is {int(n * budget)} frames, the shortest of the {len(shots)} shots " \
               f"has {int(lengths.min())} frames"
    else:
        durations = sampled.frame_ends[shots[:, 1]] - sampled.frame_times[shots[:, 0]]
        size = f"{budget:.0%} of {sampled.duration_s:.1f} s is {budget * sampled.duration_s:.2f} s, the shortest " \
               f"of the {len(shots)} shots lasts {float(durations.min()):.2f} s"
    return f"no shot fits the budget: {size}{zero}; raise --budget (or lower --min-shot-seconds)"

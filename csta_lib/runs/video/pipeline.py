"""``summarize``: a video file and a CSTA checkpoint in, a summary video and its JSON sidecar out.

The steps, each in its own module of this package: check the request (every output path before any work),
decode + sample + encode the video (:mod:`~csta_lib.runs.video.features`) while the model loads in a
background thread, check that the features are what the checkpoint was trained on, KTS shots
(:mod:`~csta_lib.runs.video.shots`), CSTA scores and the knapsack (:mod:`~csta_lib.runs.video.selection`),
then the summary video (:mod:`~csta_lib.runs.video.writing`), the PNGs (:mod:`~csta_lib.runs.video.figures`)
and the sidecar, written atomically together: every output goes to a temporary file that is renamed only
when all succeeded. Videos of fewer than 2 decodable frames are errors; short videos (fewer steps than the
GoogLeNet trunk needs) are handled by the model itself (see :mod:`csta_lib.model`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET, check_budget
from csta_lib.runs.io import atomic_path, check_outputs
from csta_lib.runs.video.decode import VideoInfo, probe_video
from csta_lib.runs.video.encoders import EncoderInfo, build_encoder, feature_mismatch
from csta_lib.runs.video.features import ENCODE_BATCH, EncodedVideo, encode_video
from csta_lib.runs.video.figures import contact_sheet, timeline_figure
from csta_lib.runs.video.sampling import SampledVideo, stride_for
from csta_lib.runs.video.selection import NoShotFitsError, score_steps, select_shots
from csta_lib.runs.video.shots import DEFAULT_SHOTS, ShotSettings, split_long_shots, video_shots
from csta_lib.runs.video.writing import output_format_for, write_summary_video
from csta_lib.runs.video.x264 import X264_PRESET

SIDECAR_FORMAT = "csta-summary/1"


@dataclass(frozen=True)
class SummaryResult:
    """The sidecar (JSON-able dict, also written next to the video) and the selected shots' thumbnails."""

    sidecar: dict[str, Any]
    thumbnails: tuple[np.ndarray, ...] = field(repr=False)
    features: np.ndarray = field(repr=False)



def sidecar_path_for(output: str | Path) -> Path:
    """Where the JSON sidecar of ``output`` goes: the same name with ``.json``."""
    return Path(output).with_suffix(".json")


@dataclass(frozen=True)
class _Request:
    """A checked :func:`summarize` request: where to read and write, the budget and how to sample."""

    video: Path
    output: Path
    output_format: str
    checkpoint: str | Path  # as given (recorded so in the sidecar)
    sidecar: Path
    pictures: dict[str, Path]  # the PNGs asked for: "contact_sheet" and/or "timeline"
    budget: float
    info: VideoInfo
    stride: int
    interval_s: float | None  # sampling by time, one sample per interval_s seconds (see sample_frames); None: by stride
    device: str  # where the CSTA model scores: "cpu", "cuda", "cuda:N"


class _Stopwatch:
    """Seconds per stage, in the order run: the sidecar's ``timings_s``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 4)
        self._last = now

    def stop(self) -> None:
        self.timings["total"] = round(time.perf_counter() - self._start, 4)


def _warn(message: str, warnings: list[str]) -> None:
    warnings.append(message)
    print(f"csta: WARNING: {message}", file=sys.stderr)


def _check_request(video: str | Path, output: str | Path, checkpoint: str | Path, *, budget: Any, stride: int,
                   sample_fps: float | None, batch_size: Any, sidecar: str | Path | None,
                   pictures: dict[str, str | Path | None], device: str) -> _Request:
    """Every cheap check before any heavy work, nothing created: arguments, the device, output paths
    (:func:`~csta_lib.runs.io.check_outputs`), the video's container and the checkpoint's existence."""
    video, output = Path(video), Path(output)
    budget = check_budget(budget)
    device = _check_device(device)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CstaInputError(f"batch_size must be >= 1, got {batch_size!r}")
    output_format = output_format_for(output)
    sidecar = Path(sidecar) if sidecar else sidecar_path_for(output)
    pngs = {key: Path(path) for key, path in pictures.items() if path}
    check_outputs({output: "-o/--output", sidecar: "--sidecar",
                   **{path: f"--{key.replace('_', '-')}" for key, path in pngs.items()}},
                  {video: "video", checkpoint: "--checkpoint"})
    info = probe_video(video)
    stride = stride_for(info.fps, sample_fps, stride)
    if not Path(checkpoint).is_file():
        raise CstaInputError(f"checkpoint {checkpoint} does not exist")
    interval_s = None if sample_fps is None else stride / info.fps
    return _Request(video, output, output_format, checkpoint, sidecar, pngs, budget, info, stride, interval_s,
                    device)


def _check_device(device: str) -> str:
    """``device`` if the model can score there (a :class:`~csta_lib.errors.ConfigError` naming it if not)."""
    if device == "cpu":
        return device  # nothing to check, and torch stays off the start-up path (see load_model)
    # Imported only for another device: it imports torch, which the CPU path leaves to the loading thread.
    from csta_lib.runs.training import resolve_device

    return resolve_device(device)


def load_model(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The checkpoint's model (eval mode, on ``device``) and dict.

    Run in a background thread by :func:`summarize` while the video decodes: importing torch and
    torchvision and building the model take longer than decoding.
    """
    # Imported here, in the loading thread: the checkpoint module imports torch, which would otherwise
    # hold up the decoding at start-up.
    from csta_lib.runs.checkpoint import load_checkpoint

    model, checkpoint = load_checkpoint(Path(path), map_location="cpu")
    return model.to(device), checkpoint


def _check_features(encoder: EncoderInfo, checkpoint: dict[str, Any], allow: bool, warnings: list[str]) -> str | None:
    """Why the encoder's features are not what the checkpoint was trained on (None if they are): an error
    unless ``allow``, then a warning."""
    mismatch = feature_mismatch(encoder, checkpoint.get("features"))
    if mismatch and not allow:
        raise CstaInputError(f"feature mismatch: {mismatch}. The scores would not mean what the checkpoint "
                             "learned; pass --allow-feature-mismatch to summarise anyway (recorded in the sidecar)")
    if mismatch:
        _warn(f"feature mismatch allowed: {mismatch}", warnings)
    return mismatch


def _select(encoded: EncodedVideo, scores: np.ndarray, shots: np.ndarray, settings: ShotSettings, budget: float,
            warnings: list[str]) -> tuple[ShotSettings, np.ndarray, np.ndarray, np.ndarray]:
    """``(settings used, shots, shot scores, kept)``: the knapsack's selection. When every shot is longer than
    the budget, the shots too long are cut again into shots that fit
    (:meth:`~csta_lib.runs.video.shots.ShotSettings.fitting`, :func:`~csta_lib.runs.video.shots.split_long_shots`,
    with a warning) rather than failing; only a budget shorter than the shortest shot allowed is an error."""
    sampled = encoded.sampled
    try:
        return (settings, shots, *select_shots(scores, shots, sampled, budget))
    except NoShotFitsError:
        fitting = settings.fitting(budget * sampled.duration_s)
        if fitting is None or fitting == settings:
            raise
    shots = split_long_shots(encoded, shots, fitting)
    values, kept = select_shots(scores, shots, sampled, budget)
    _warn(f"every KTS shot was longer than the {budget:.0%} budget ({budget * sampled.duration_s:.2f} s): the "
          f"longer ones are cut again into shots of {fitting.min_shot_seconds:.2f} to {fitting.max_shot_seconds:.2f} s",
          warnings)
    return fitting, shots, values, kept


def _video_fields(request: _Request, sampled: SampledVideo) -> dict[str, Any]:
    """The sidecar's facts about the input video, its timing and its sampling."""
    rate = request.info.frame_rate
    return {
        "input": str(request.video),
        "output": str(request.output),
        "n_frames": sampled.n_frames,
        "fps": request.info.fps,
        "frame_rate": f"{rate.numerator}/{rate.denominator}",
        "mean_fps": round(sampled.n_frames / sampled.duration_s, 4),
        "variable_frame_rate": sampled.variable_frame_rate,
        "timestamps": "source" if sampled.source_timestamps else "constant-rate",
        "duration_s": round(sampled.duration_s, 4),
        "width": request.info.width,
        "height": request.info.height,
        "sampling": "frames" if request.interval_s is None else "time",
        "stride": request.stride,
        "sample_interval_s": None if request.interval_s is None else round(request.interval_s, 6),
        "n_samples": int(len(sampled.picks)),
        "picks": sampled.picks.tolist(),
        "pick_times": [round(float(x), 4) for x in sampled.pick_times],
    }


def _model_fields(request: _Request, encoder: EncoderInfo, checkpoint: dict[str, Any],
                  mismatch: str | None) -> dict[str, Any]:
    """The sidecar's provenance of the scores: the encoder and the checkpoint."""
    return {
        "encoder": encoder.name,
        "encoder_info": encoder.as_dict(),
        "random_weights": encoder.random_weights,
        "checkpoint": str(request.checkpoint),
        "checkpoint_preset": checkpoint.get("preset"),
        "checkpoint_features": checkpoint.get("features"),
        "feature_mismatch": bool(mismatch),
        "feature_mismatch_reason": mismatch,
        "device": request.device,
    }


def _selection_fields(budget: float, sampled: SampledVideo, shots: np.ndarray, scores: np.ndarray,
                      values: np.ndarray, kept: np.ndarray) -> dict[str, Any]:
    """The sidecar's shots, scores and selected shots, with times in seconds from the first frame."""
    origin = float(sampled.frame_times[0])
    starts_s, ends_s = sampled.frame_times - origin, sampled.frame_ends - origin
    selected = [
        {"start_frame": int(s), "end_frame": int(e),
         "start_time": round(float(starts_s[s]), 4), "end_time": round(float(ends_s[e]), 4),
         "score": float(v)}
        for (s, e), v, k in zip(shots, values, kept, strict=True) if k
    ]
    return {
        "budget": budget,
        "shots": shots.tolist(),
        "shot_times": [[round(float(starts_s[s]), 4), round(float(ends_s[e]), 4)] for s, e in shots],
        "scores": [float(s) for s in scores],
        "shot_scores": [float(v) for v in values],
        "selected_shots": selected,
        "summary_n_frames": int(sum(s["end_frame"] - s["start_frame"] + 1 for s in selected)),
    }


def _write_pictures(pictures: dict[str, Path], thumbnails: tuple[np.ndarray, ...], record: dict[str, Any],
                    temporary: Callable[[Path], Path]) -> None:
    """The PNGs asked for (contact sheet, timeline), each to ``temporary(path)``; their paths go in ``record``."""
    if "contact_sheet" in pictures:
        contact_sheet(thumbnails, record).save(temporary(pictures["contact_sheet"]), format="PNG")
        record["contact_sheet"] = str(pictures["contact_sheet"])
    if "timeline" in pictures:
        timeline_figure(record).savefig(temporary(pictures["timeline"]), format="png", dpi=110)
        record["timeline"] = str(pictures["timeline"])


def _write_outputs(request: _Request, sampled: SampledVideo, selected: np.ndarray, record: dict[str, Any], *,
                   keep_audio: bool, preset: str, progress: bool, watch: _Stopwatch) -> tuple[np.ndarray, ...]:
    """Write the summary video (with its audio), the PNGs and the sidecar; return the selected shots' thumbnails.

    Every file goes to a temporary that is renamed only when all of them were written: on any error none
    is left behind. ``record`` gets the written video's facts, the paths and the timings.
    """
    with contextlib.ExitStack() as stack:
        def temporary(path: Path) -> Path:
            return stack.enter_context(atomic_path(path))

        written = write_summary_video(request.video, temporary(request.output), selected, sampled.cut_plan,
                                      keep_audio=keep_audio, output_format=request.output_format, preset=preset,
                                      progress=progress)
        record["audio_kept"] = written.audio_kept
        record["summary_duration_s"] = round(written.duration_s, 4)
        watch.lap("write")
        if request.pictures:
            _write_pictures(request.pictures, written.thumbnails, record, temporary)
            watch.lap("pictures")
        record["sidecar"] = str(request.sidecar)
        watch.stop()
        temporary(request.sidecar).write_text(json.dumps(record, indent=1) + "\n")
    return written.thumbnails


def summarize(
    video: str | Path,
    output: str | Path,
    checkpoint: str | Path,
    *,
    encoder: str | None = None,
    budget: float = SUMMARY_BUDGET,
    stride: int = FRAME_STEP,
    sample_fps: float | None = None,
    allow_feature_mismatch: bool = False,
    random_weights: bool = False,
    sidecar: str | Path | None = None,
    contact_sheet_png: str | Path | None = None,
    timeline_png: str | Path | None = None,
    keep_audio: bool = True,
    preset: str = X264_PRESET,
    progress: bool = False,
    batch_size: int = ENCODE_BATCH,
    shot_settings: ShotSettings = DEFAULT_SHOTS,
    device: str = "cpu",
) -> SummaryResult:
    """Summarise ``video`` into ``output`` (H.264) with the CSTA model in ``checkpoint``.

    Stages: decode + sample every ``stride``-th frame (or, with ``sample_fps``, one frame every
    ``round(fps / sample_fps) / fps`` seconds of presentation time), encode the samples (``encoder``: see
    :mod:`csta_lib.runs.video.encoders`; None = googlenet where its weights exist, else mobilenet_v1_1024), KTS
    shots (``shot_settings``: how long shots are, :class:`~csta_lib.runs.video.shots.ShotSettings`), CSTA
    scores (the model on ``device``: ``cpu``, ``cuda`` or ``cuda:N``), knapsack at ``budget``, write the
    selected shots. The sidecar JSON (default ``output`` with ``.json``) and the optional PNGs are written
    atomically together with the video: on any error none of them is left behind. Bad input raises
    :class:`CstaInputError`.

    All output paths are checked first (:func:`csta_lib.runs.io.check_outputs`: none may be the video, the
    checkpoint or another output, a directory, below a file, or have an over-long name), before any
    decoding, and no folder is created unless everything was written.

    Sidecar keys (``format`` ``csta-summary/1``): ``n_frames``, ``fps`` and ``frame_rate`` (the stream's
    nominal rate, exact), ``mean_fps`` (frames per real second), ``variable_frame_rate``, ``timestamps``
    (``"source"``, or ``"constant-rate"`` when the stream's were unusable), ``duration_s`` (real: end of
    the last frame minus start of the first), ``width``, ``height``, ``sampling`` (``"frames"`` or
    ``"time"``), ``stride``, ``sample_interval_s``, ``n_samples``, ``picks``, ``pick_times``; ``encoder`` and
    ``encoder_info`` (weights file, ``random_weights``); ``checkpoint``, ``checkpoint_preset``,
    ``checkpoint_features``, ``feature_mismatch`` (+ ``feature_mismatch_reason``), ``device``; ``budget``;
    ``shot_settings`` (:meth:`ShotSettings.as_dict <csta_lib.runs.video.shots.ShotSettings.as_dict>`),
    ``shots_recut_for_budget`` (None, or the settings that cut the long shots again when every shot was longer
    than the budget); ``shots``
    (inclusive ``[start, end]`` frames covering the video), ``shot_times`` (their ``[start, end)`` in
    seconds from the first frame), ``scores`` (one per sample), ``shot_scores``; ``selected_shots``
    (``start_frame``/``end_frame`` inclusive, ``start_time``/``end_time`` in seconds from the first frame,
    ``end_time`` exclusive, ``score``); ``summary_n_frames``, ``summary_duration_s`` (the written video's),
    ``has_audio``, ``audio_kept``, ``decode_errors``, ``warnings``, ``timings_s`` (per stage), and the
    paths written.
    """
    watch = _Stopwatch()
    request = _check_request(video, output, checkpoint, budget=budget, stride=stride, sample_fps=sample_fps,
                             batch_size=batch_size, sidecar=sidecar,
                             pictures={"contact_sheet": contact_sheet_png, "timeline": timeline_png}, device=device)
    watch.lap("validate")
    frame_encoder = build_encoder(encoder, random_weights=random_weights)
    watch.lap("load_encoder")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="csta-load") as pool:
        loading = pool.submit(load_model, request.checkpoint, request.device)  # the model loads while the video decodes
        encoded = encode_video(request.video, frame_encoder, stride=request.stride, interval_s=request.interval_s,
                               batch_size=batch_size, progress=progress)
        sampled, features = encoded.sampled, encoded.features
        watch.lap("decode_encode")
        model, ckpt = loading.result()  # re-raises a loading error (not a checkpoint, unreadable, ...)
    watch.lap("wait_model")
    warnings: list[str] = []
    mismatch = _check_features(frame_encoder.info, ckpt, allow_feature_mismatch, warnings)
    if sampled.decode_errors:
        _warn(f"{request.video}: {sampled.decode_errors} corrupt packet(s) skipped while decoding; "
              f"{sampled.n_frames} frames could be decoded", warnings)
    shots = video_shots(encoded, shot_settings)
    watch.lap("kts")
    scores = score_steps(model, features)
    watch.lap("score")
    used, shots, values, kept = _select(encoded, scores, shots, shot_settings, request.budget, warnings)
    watch.lap("select")
    record = {
        "format": SIDECAR_FORMAT,
        **_video_fields(request, sampled),
        **_model_fields(request, frame_encoder.info, ckpt, mismatch),
        "shot_settings": shot_settings.as_dict(),
        "shots_recut_for_budget": None if used == shot_settings else used.as_dict(),
        **_selection_fields(request.budget, sampled, shots, scores, values, kept),
        "summary_duration_s": None,  # the written video's, set when it is written
        "has_audio": request.info.has_audio,
        "audio_kept": False,
        "decode_errors": sampled.decode_errors,
        "warnings": warnings,
        "timings_s": watch.timings,
    }
    thumbnails = _write_outputs(request, sampled, shots[kept], record, keep_audio=keep_audio, preset=preset,
                                progress=progress, watch=watch)
    return SummaryResult(record, thumbnails, features)

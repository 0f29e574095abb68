"""Video work: from a video file to step features, shots, a CSTA summary video and its sidecar.

One module per concern (each explains how it differs from the official custom-video path, and why):

=============== ==========================================================================================
``decode``      opening media files safely, probing, decoding around corrupt packets, the real time of
                every frame (variable frame rates)
``sampling``    which frames become steps (every ``stride``-th frame, or by time), :class:`SampledVideo`,
                the writer's :class:`CutPlan`
``encoders``    frame encoders: GoogLeNet pool5 (torchvision), MobileNetV1 (TFLite)
``features``    :func:`encode_video`: decoding, sampling and encoding in one call, what ``csta summarize``
                and ``csta data build`` both start from
``shots``       KTS shots on the sampled features
``selection``   CSTA scores and the knapsack's selected shots
``writing``     the summary video (H.264) and its audio
``x264``        how the summary video is encoded (presets, the default, the quality)
``figures``     contact sheet, score timeline, captions and provenance texts
``pipeline``    :func:`summarize` and its sidecar
=============== ==========================================================================================

Every public name is importable from here (``from csta_lib.runs.video import summarize``), resolved on first
use: importing this package imports neither PyAV nor the encoders, so ``csta --help`` can read defaults such as
:data:`~csta_lib.runs.video.shots.DEFAULT_SHOTS` without the ``[video]`` extra.
"""

from __future__ import annotations

import importlib
from typing import Any

# module of this package -> the public names it defines. Resolved on first use (PEP 562): the decoding modules
# import PyAV, the pipeline the whole chain, and callers that need one setting should not pay for them.
_MODULES = {
    "decode": ("RETIMED_TIME_BASE", "VideoInfo", "VideoInputError", "frame_timing", "is_variable_frame_rate",
               "open_media", "open_video", "probe_video"),
    "encoders": ("ENCODERS", "FEATURE_DIM", "FEATURE_KIND", "INPUT_SIZE", "EncoderInfo", "FrameEncoder",
                 "GoogLeNetEncoder", "MobileNetV1Encoder", "build_encoder", "default_encoder_name",
                 "encode_batches", "feature_mismatch", "googlenet_weights_path"),
    "features": ("ENCODE_BATCH", "EncodedVideo", "encode_video"),
    "figures": ("caption_text", "contact_sheet", "provenance_text", "shots_text", "timeline_figure"),
    "pipeline": ("SIDECAR_FORMAT", "SummaryResult", "sidecar_path_for", "summarize"),
    "sampling": ("CutPlan", "SampledVideo", "decode_samples", "sample_frames", "stride_for"),
    "selection": ("NoShotFitsError", "score_steps", "select_shots", "shot_weights"),
    "shots": ("DEFAULT_SHOTS", "ShotSettings", "merge_short_shots", "shots_from_features", "split_long_shots",
              "video_shots"),
    "writing": ("OUTPUT_FORMATS", "THUMB_WIDTH", "WrittenSummary", "output_format_for", "write_summary_video"),
    "x264": ("X264_CRF", "X264_PRESET", "X264_PRESETS"),
}
_PUBLIC = {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

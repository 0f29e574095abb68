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
``figures``     contact sheet, score timeline, captions and provenance texts
``pipeline``    :func:`summarize` and its sidecar
=============== ==========================================================================================

Every public name is importable from here (``from csta_lib.runs.video import summarize``).
"""

from csta_lib.runs.video.decode import (RETIMED_TIME_BASE, VideoInfo, VideoInputError, frame_timing,
                                        is_variable_frame_rate, open_media, open_video, probe_video)
from csta_lib.runs.video.encoders import (ENCODERS, FEATURE_DIM, FEATURE_KIND, INPUT_SIZE, EncoderInfo,
                                          FrameEncoder, GoogLeNetEncoder, MobileNetV1Encoder, build_encoder,
                                          default_encoder_name, encode_batches, feature_mismatch,
                                          googlenet_weights_path)
from csta_lib.runs.video.features import ENCODE_BATCH, EncodedVideo, encode_video
from csta_lib.runs.video.figures import caption_text, contact_sheet, provenance_text, timeline_figure
from csta_lib.runs.video.pipeline import SIDECAR_FORMAT, SummaryResult, sidecar_path_for, summarize
from csta_lib.runs.video.sampling import CutPlan, SampledVideo, decode_samples, sample_frames, stride_for
from csta_lib.runs.video.selection import score_steps, select_shots, shot_weights
from csta_lib.runs.video.shots import shots_from_features
from csta_lib.runs.video.writing import (OUTPUT_FORMATS, THUMB_WIDTH, X264_CRF, X264_PRESET, WrittenSummary,
                                         output_format_for, write_summary_video)

__all__ = [
    "CutPlan", "ENCODERS", "ENCODE_BATCH", "EncodedVideo", "EncoderInfo", "FEATURE_DIM", "FEATURE_KIND",
    "FrameEncoder", "GoogLeNetEncoder", "INPUT_SIZE", "MobileNetV1Encoder", "OUTPUT_FORMATS", "RETIMED_TIME_BASE",
    "SIDECAR_FORMAT", "SampledVideo", "SummaryResult", "THUMB_WIDTH", "VideoInfo", "VideoInputError",
    "WrittenSummary", "X264_CRF", "X264_PRESET", "build_encoder", "caption_text", "contact_sheet",
    "decode_samples", "default_encoder_name", "encode_batches", "encode_video", "feature_mismatch",
    "frame_timing", "googlenet_weights_path", "is_variable_frame_rate", "open_media", "open_video",
    "output_format_for", "probe_video", "provenance_text", "sample_frames", "score_steps", "select_shots",
    "shot_weights", "shots_from_features", "sidecar_path_for", "stride_for", "summarize", "timeline_figure",
    "write_summary_video",
]

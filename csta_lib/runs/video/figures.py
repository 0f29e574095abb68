"""Pictures of a summary and their words: the contact sheet, the score timeline, captions and provenance.

All of them read the sidecar (and the thumbnails the writer kept), so a notebook can redraw them from a
sidecar file alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib.data.eccv16 import SURROGATE_LABEL
from csta_lib.runs.video.writing import THUMB_WIDTH


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


def contact_sheet(thumbnails: Sequence[np.ndarray], sidecar: dict[str, Any], columns: int = 4) -> Any:
    """A PIL image: the middle frame of each selected shot, labelled with its time range and score."""
    # Imported only when a contact sheet is asked for (start-up).
    from PIL import Image, ImageDraw

    shots = sidecar["selected_shots"]
    if not thumbnails:
        image = Image.new("RGB", (THUMB_WIDTH * 2, 40), "white")
        ImageDraw.Draw(image).text((8, 12), "no shot selected", fill="black")
        return image
    h, w = thumbnails[0].shape[:2]
    label_h = 18
    columns = max(1, min(columns, len(thumbnails)))
    rows = math.ceil(len(thumbnails) / columns)
    sheet = Image.new("RGB", (columns * (w + 4) + 4, rows * (h + label_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (thumb, shot) in enumerate(zip(thumbnails, shots, strict=False)):
        x = 4 + (k % columns) * (w + 4)
        y = 4 + (k // columns) * (h + label_h + 4)
        sheet.paste(Image.fromarray(thumb[:h, :w]), (x, y))
        label = (f"{_clock(shot['start_time'])}-{_clock(shot['end_time'])}  "
                 f"frames {shot['start_frame']}-{shot['end_frame']}  score {shot['score']:.2f}")
        draw.text((x + 2, y + h + 3), label, fill="black")
    return sheet


def timeline_figure(sidecar: dict[str, Any], title: str | None = None) -> Any:
    """A matplotlib Figure: sample scores over real time, shot boundaries, and the selected shots shaded.

    Times come from the sidecar's ``pick_times``/``shot_times``/``duration_s`` (real presentation times);
    sidecars without them (older ones) fall back to frame indices over ``fps``.
    """
    # matplotlib (the optional [book] extra, half a second to import) only when a timeline is asked for.
    from matplotlib.figure import Figure

    fps = sidecar["fps"]
    scores = np.asarray(sidecar["scores"], np.float64)
    if "pick_times" in sidecar:
        starts = np.asarray(sidecar["pick_times"], np.float64)
        boundaries = [start for start, _ in sidecar["shot_times"][1:]]
        duration = float(sidecar["duration_s"])
    else:
        starts = np.asarray(sidecar["picks"], np.float64) / fps
        boundaries = [start / fps for start, _ in sidecar["shots"][1:]]
        duration = sidecar["n_frames"] / fps
    fig = Figure(figsize=(10, 2.8), layout="constrained")
    ax = fig.add_subplot()
    for shot in sidecar["selected_shots"]:
        ax.axvspan(shot["start_time"], shot["end_time"], color="tab:orange", alpha=0.3, lw=0)
    for start in boundaries:
        ax.axvline(start, color="0.5", lw=0.6, ls=":")
    # each sample's score holds until the next sample, as the frame-level scores do
    ax.step(np.append(starts, duration), np.append(scores, scores[-1:]), where="post", color="tab:blue", lw=1.2,
            label="CSTA score (per frame)")
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.plot([], [], color="0.5", lw=0.6, ls=":", label="KTS shot boundary")
    ax.fill_between([], [], color="tab:orange", alpha=0.3, label=f"selected ({sidecar['budget']:.0%} budget)")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    labels = [f"encoder {sidecar['encoder']}"]
    if sidecar.get("random_weights"):
        labels.append("RANDOM encoder weights")
    if sidecar.get("feature_mismatch"):
        labels.append("feature mismatch with the checkpoint")
    ax.set_title(title or f"{Path(sidecar['input']).name}: " + ", ".join(labels), fontsize=9)
    return fig


def caption_text(sidecar: dict[str, Any]) -> str:
    """A one-line figure caption: video, encoder, what the checkpoint was trained on, mismatch."""
    features = sidecar.get("checkpoint_features") or {}
    trained_on = SURROGATE_LABEL if features.get("surrogate") else f"{features.get('encoder', 'unknown')} features"
    random = " (RANDOM weights)" if (sidecar.get("encoder_info") or {}).get("random_weights") else ""
    mismatch = "; features do NOT match the checkpoint's" if sidecar.get("feature_mismatch") else ""
    return (f"{Path(sidecar['input']).name}: encoder {sidecar['encoder']}{random}, CSTA checkpoint trained on "
            f"{trained_on}{mismatch}; budget {sidecar['budget']:.0%}.")


def provenance_text(sidecar: dict[str, Any]) -> str:
    """In plain words: which encoder and which checkpoint made this summary, and what that means."""
    info = sidecar.get("encoder_info") or {}
    features = sidecar.get("checkpoint_features") or {}
    encoder = {"mobilenet_v1_1024": "the ImageNet-pretrained MobileNetV1 embedding (1024-d, 8-bit TFLite)",
               "googlenet": "torchvision GoogLeNet pool5 (1024-d)"}.get(sidecar["encoder"], sidecar["encoder"])
    if info.get("random_weights"):
        encoder += " with RANDOM weights"
    trained_on = ("surrogate (synthetic) features" if features.get("surrogate")
                  else f"{features.get('encoder', 'unknown')} features")
    text = (f"Frames encoded with {encoder}; scores from the CSTA checkpoint `{Path(sidecar['checkpoint']).name}` "
            f"(preset {sidecar.get('checkpoint_preset')}), trained on {trained_on}.")
    if sidecar.get("feature_mismatch"):
        reason = sidecar["feature_mismatch_reason"]
        text += (f" **The features do not match what the model was trained on** ({reason}): "
                 "the shots are real KTS cuts of this video, but the scores, and so the selection, carry no "
                 "learned notion of importance. It shows the pipeline working, not the quality of CSTA.")
    return text

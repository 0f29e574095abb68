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
from csta_lib.runs.video.shots import ShotSettings
from csta_lib.runs.video.writing import THUMB_WIDTH


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


#: Label font size of the contact sheet in pixels: readable when a four-column sheet is shown at a page's width.
SHEET_FONT_PX = 20


def contact_sheet(thumbnails: Sequence[np.ndarray], sidecar: dict[str, Any], columns: int = 4) -> Any:
    """A PIL image: the middle frame of each selected shot, labelled with its time range and score."""
    # Imported only when a contact sheet is asked for (start-up).
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=SHEET_FONT_PX)
    shots = sidecar["selected_shots"]
    if not thumbnails:
        image = Image.new("RGB", (THUMB_WIDTH * 2, 2 * SHEET_FONT_PX), "white")
        ImageDraw.Draw(image).text((8, SHEET_FONT_PX // 2), "no shot selected", fill="black", font=font)
        return image
    h, w = thumbnails[0].shape[:2]
    line = round(1.25 * SHEET_FONT_PX)
    label_h = 2 * line + 6  # two lines: the time range, then the score
    columns = max(1, min(columns, len(thumbnails)))
    rows = math.ceil(len(thumbnails) / columns)
    sheet = Image.new("RGB", (columns * (w + 8) + 8, rows * (h + label_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (thumb, shot) in enumerate(zip(thumbnails, shots, strict=False)):
        x = 8 + (k % columns) * (w + 8)
        y = 8 + (k // columns) * (h + label_h + 8)
        sheet.paste(Image.fromarray(thumb[:h, :w]), (x, y))
        draw.text((x + 2, y + h + 4), f"{_clock(shot['start_time'])} – {_clock(shot['end_time'])}", fill="black",
                  font=font)
        draw.text((x + 2, y + h + 4 + line), f"score {shot['score']:.2f}", fill=(85, 85, 85),
                  font=font)
    return sheet


def shots_text(sidecar: dict[str, Any]) -> str:
    """The shots in words: how many, their mean length, and the settings that made them."""
    times = np.asarray(sidecar["shot_times"], np.float64).reshape(-1, 2) if "shot_times" in sidecar else None
    n = len(sidecar["shots"])
    text = f"{n} KTS shot{'s' if n != 1 else ''}"
    if times is not None and n:
        text += f", {float((times[:, 1] - times[:, 0]).mean()):.1f} s on average"
    settings = sidecar.get("shot_settings")
    if settings:
        text += f" ({ShotSettings.from_dict(settings).text()})"
    return text


#: Font sizes of the timeline (points; the figure is drawn 9 in wide and shown at about a page's width).
TIMELINE_FONT_PT = 11


def timeline_figure(sidecar: dict[str, Any], title: str | None = None) -> Any:
    """A matplotlib Figure: sample scores over real time, the KTS shots (alternately shaded, boundaries
    drawn), the selected shots highlighted, and the shot settings in the legend.

    Times come from the sidecar's ``pick_times``/``shot_times``/``duration_s`` (real presentation times);
    sidecars without them (older ones) fall back to frame indices over ``fps``.
    """
    # matplotlib (the optional [book] extra, half a second to import) only when a timeline is asked for.
    from matplotlib.figure import Figure

    fps = sidecar["fps"]
    scores = np.asarray(sidecar["scores"], np.float64)
    if "pick_times" in sidecar:
        starts = np.asarray(sidecar["pick_times"], np.float64)
        spans = [(float(a), float(b)) for a, b in sidecar["shot_times"]]
        duration = float(sidecar["duration_s"])
    else:
        starts = np.asarray(sidecar["picks"], np.float64) / fps
        spans = [(a / fps, (b + 1) / fps) for a, b in sidecar["shots"]]
        duration = sidecar["n_frames"] / fps
    size = TIMELINE_FONT_PT
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for k, (a, b) in enumerate(spans):  # every shot a band, so that each one reads as a segment
        if k % 2:
            ax.axvspan(a, b, color="0.93", lw=0)
    for shot in sidecar["selected_shots"]:
        ax.axvspan(shot["start_time"], shot["end_time"], color="tab:orange", alpha=0.45, lw=0)
    for a, _ in spans[1:]:
        ax.axvline(a, color="0.35", lw=1.0)
    # each sample's score holds until the next sample, as the frame-level scores do
    ax.step(np.append(starts, duration), np.append(scores, scores[-1:]), where="post", color="tab:blue", lw=1.6,
            label="CSTA score (per frame)")
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)", fontsize=size)
    ax.set_ylabel("score", fontsize=size)
    ax.tick_params(labelsize=size - 1)
    ax.plot([], [], color="0.35", lw=1.0, label=f"shot boundary: {shots_text(sidecar)}")
    n_selected = len(sidecar["selected_shots"])
    ax.fill_between([], [], color="tab:orange", alpha=0.45,
                    label=f"selected: {n_selected} shot{'s' if n_selected != 1 else ''}, {sidecar['budget']:.0%} "
                          "budget")
    fig.legend(loc="outside lower center", fontsize=size - 1, ncol=1, frameon=False)
    labels = [f"encoder {sidecar['encoder']}"]
    if sidecar.get("random_weights"):
        labels.append("RANDOM encoder weights")
    if sidecar.get("feature_mismatch"):
        labels.append("feature mismatch with the checkpoint")
    ax.set_title(title or f"{Path(sidecar['input']).name}: " + ", ".join(labels), fontsize=size)
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

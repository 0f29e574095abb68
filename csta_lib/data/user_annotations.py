"""Reader of annotation files for a user's own videos (``csta data build``), and their per-frame form.

Two styles, as the two benchmarks were annotated (book method page, method-input):

``tvsum`` (importance scores)
    Every annotator gives each time range of a video a score on any numeric scale (TVSum's 1..5, 0..10, ...).
    Frames outside every range of an annotator get the lowest score of the scale. The scale is the file's
    lowest and highest score unless it is declared (``scale``), and the training target is normalised with it
    as the eccv16 TVSum file was made: ``gtscore = (mean over annotators of the score − low) / (high − low)``.
``summe`` (selected intervals)
    Every annotator marks the ranges they would keep (``score`` 1; a row with ``score`` 0 says explicitly that
    a range was not selected). The user summaries are these selections; ``gtscore`` the fraction of annotators
    who selected each sampled frame, as SumMe's ``gt_score``.

Times are in seconds (``unit: seconds``, the default: a range is ``[start, end)`` of presentation time from
the first frame) or in frames (``unit: frames``: frame indices, ``[start, end)`` too). Two forms:

CSV, with this header (column order free, nothing else)::

    video,annotator,start,end,score
    bikes.mp4,ann1,0.0,4.0,2
    bikes.mp4,ann1,4.0,10.0,5

JSON: the same rows as a list of objects, or an object that may also declare the style, the unit and the scale::

    {"style": "tvsum", "unit": "seconds", "scale": [1, 5],
     "annotations": [{"video": "bikes.mp4", "annotator": "ann1", "start": 0.0, "end": 4.0, "score": 2}]}

``video`` is the video's file name without its folder. Every error names the file and the row (CSV line or
JSON entry) at fault. This module reads and converts; building the eccv16 fields from it is
:mod:`csta_lib.runs.dataset_build`'s job.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib.data.eccv16 import DATASETS
from csta_lib.errors import DataFormatError, MissingDataError

#: Annotation styles: the benchmark whose kind of annotation a file follows (``summe``: selected intervals,
#: ``tvsum``: importance scores). The style also picks the default evaluation protocol.
STYLES = DATASETS
DEFAULT_STYLE = "tvsum"
TIME_UNITS = ("seconds", "frames")
DEFAULT_UNIT = "seconds"
COLUMNS = ("video", "annotator", "start", "end", "score")
#: The most rows one annotation file may hold (a day of 1-s ranges by 20 annotators for 50 videos is 86 M; far
#: beyond any real file, and it bounds the memory a malformed file can take).
MAX_ROWS = 5_000_000


class AnnotationError(DataFormatError):
    """An annotation file that cannot be used: the message names the file and the row."""


@dataclass(frozen=True)
class Interval:
    """One row: ``[start, end)`` in the file's unit, the annotator's score, and where the row is (for messages)."""

    start: float
    end: float
    score: float
    row: str  # "line 7" (CSV) or "entry 3" (JSON)


@dataclass(frozen=True, eq=False)
class VideoAnnotation:
    """Every annotator's intervals of one video, annotators in the order the file first names them."""

    video: str
    annotators: tuple[str, ...]
    intervals: dict[str, tuple[Interval, ...]]

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)


@dataclass(frozen=True, eq=False)
class AnnotationFile:
    """A read, checked annotation file."""

    path: Path
    style: str
    unit: str
    scale: tuple[float, float]  # (low, high): the declared scale, else the file's lowest and highest score
    scale_declared: bool
    videos: dict[str, VideoAnnotation]  # by video file name, in the order the file first names them

    def __getitem__(self, video: str) -> VideoAnnotation:
        return self.videos[video]

    def single_annotator_videos(self) -> list[str]:
        """Videos with one annotator (allowed: their F1 and τ/ρ then compare with one person's opinion)."""
        return [name for name, v in self.videos.items() if v.n_annotators == 1]


# --------------------------------------------------------------------------------------------
# reading


def _choice(value: Any, allowed: tuple[str, ...], what: str, path: Path) -> str:
    if value not in allowed:
        raise AnnotationError(f"{path}: {what} {value!r} is not one of: {', '.join(allowed)}")
    return str(value)


def _number(value: Any, column: str, path: Path, row: str) -> float:
    if isinstance(value, bool):
        raise AnnotationError(f"{path}: {row}: {column} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: {row}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise AnnotationError(f"{path}: {row}: {column} is {value!r}; NaN and infinite values are not allowed")
    return number


def _text(value: Any, column: str, path: Path, row: str) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise AnnotationError(f"{path}: {row}: {column} is empty")
    return text


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise AnnotationError(f"{path}: empty file (expected the header {','.join(COLUMNS)})")
    header = [h.strip().lower() for h in header]
    if sorted(header) != sorted(COLUMNS):
        raise AnnotationError(f"{path}: line 1: header {','.join(header)!r} must name exactly the columns "
                              f"{','.join(COLUMNS)} (in any order)")
    rows = []
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise AnnotationError(f"{path}: line {line}: {len(cells)} fields, the header has {len(header)}")
        rows.append((f"line {line}", dict(zip(header, cells, strict=True))))
        if len(rows) > MAX_ROWS:
            raise AnnotationError(f"{path}: more than {MAX_ROWS:,} rows")
    return rows


def _json_rows(path: Path, text: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """(the file's declarations: style, unit, scale; the rows)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    declared: dict[str, Any] = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"style", "unit", "scale", "annotations"})
        if unknown or "annotations" not in data:
            raise AnnotationError(f"{path}: a JSON object needs 'annotations' (a list of rows) and may declare "
                                  f"'style', 'unit' and 'scale'; found {', '.join(map(repr, sorted(data)))}")
        declared = {k: data[k] for k in ("style", "unit", "scale") if k in data}
        data = data["annotations"]
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of rows, or an object with 'annotations'")
    if len(data) > MAX_ROWS:
        raise AnnotationError(f"{path}: more than {MAX_ROWS:,} rows")
    rows = []
    for number, entry in enumerate(data):
        row = f"entry {number}"
        if not isinstance(entry, dict) or sorted(entry) != sorted(COLUMNS):
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise AnnotationError(f"{path}: {row}: expected an object with exactly {', '.join(COLUMNS)}; got {keys}")
        rows.append((row, entry))
    return declared, rows


def _declared(option: Any, in_file: Any, name: str, path: Path) -> Any:
    """A setting given both as an option and in the file must agree."""
    if option is not None and in_file is not None and option != in_file:
        raise AnnotationError(f"{path}: the file declares {name} {in_file!r} but {option!r} was asked for")
    return option if option is not None else in_file


def _check_scale(scale: Any, path: Path) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: scale must be two numbers [low, high], got {scale!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise AnnotationError(f"{path}: scale [{low:g}, {high:g}] must have 0 <= low < high")
    return low, high


def _interval(path: Path, row: str, cells: dict[str, Any], style: str, unit: str) -> Interval:
    start = _number(cells["start"], "start", path, row)
    end = _number(cells["end"], "end", path, row)
    score = _number(cells["score"], "score", path, row)
    if start < 0:
        raise AnnotationError(f"{path}: {row}: start {start:g} is before the video's beginning (0)")
    if end <= start:
        raise AnnotationError(f"{path}: {row}: end {end:g} must be after start {start:g} (ranges are [start, end))")
    if unit == "frames" and (start != int(start) or end != int(end)):
        raise AnnotationError(f"{path}: {row}: frame indices must be whole numbers, got {start:g}, {end:g}")
    if score < 0:
        raise AnnotationError(f"{path}: {row}: score {score:g} is negative (scores must be >= 0)")
    if style == "summe" and score not in (0.0, 1.0):
        raise AnnotationError(f"{path}: {row}: score {score:g}: with style summe a row marks a selected range "
                              "(score 1) or an unselected one (score 0)")
    return Interval(start, end, score, row)


def _check_overlaps(path: Path, video: str, annotator: str, intervals: list[Interval]) -> None:
    """Importance scores of one annotator may not overlap (which score would a frame have?)."""
    ordered = sorted(intervals, key=lambda i: (i.start, i.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise AnnotationError(f"{path}: {after.row}: annotator {annotator!r} of {video} scores "
                                  f"[{after.start:g}, {after.end:g}), which overlaps [{before.start:g}, "
                                  f"{before.end:g}) of {before.row}")


def load_annotations(path: str | os.PathLike[str], style: str | None = None, unit: str | None = None,
                     scale: tuple[float, float] | None = None) -> AnnotationFile:
    """Read and check an annotation file (CSV or JSON, see the module docstring).

    ``style`` (``tvsum`` or ``summe``), ``unit`` (``seconds`` or ``frames``) and ``scale`` (``(low, high)``) may
    also be declared by a JSON file; both given must agree; the defaults are ``tvsum``, ``seconds`` and the
    file's range of scores. Raises :class:`AnnotationError` (a :class:`~csta_lib.errors.DataFormatError`) naming
    the file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such annotation file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if path.suffix.lower() == ".json":
        declared, rows = _json_rows(path, text)
    elif path.suffix.lower() == ".csv":
        declared, rows = {}, _csv_rows(path, text)
    else:
        raise AnnotationError(f"{path}: unknown annotation file type {path.suffix!r} (expected .csv or .json)")
    style = _choice(_declared(style, declared.get("style"), "style", path) or DEFAULT_STYLE, STYLES, "style", path)
    unit = _choice(_declared(unit, declared.get("unit"), "unit", path) or DEFAULT_UNIT, TIME_UNITS, "unit", path)
    given_scale = _declared(None if scale is None else list(scale), declared.get("scale"), "scale", path)
    if not rows:
        raise AnnotationError(f"{path}: no annotation rows")

    grouped: dict[str, dict[str, list[Interval]]] = {}
    for row, cells in rows:
        video = _text(cells["video"], "video", path, row)
        if "/" in video or "\\" in video:
            raise AnnotationError(f"{path}: {row}: video {video!r} must be the file name without its folder")
        annotator = _text(cells["annotator"], "annotator", path, row)
        grouped.setdefault(video, {}).setdefault(annotator, []).append(_interval(path, row, cells, style, unit))
    if style == "tvsum":
        for video, by_annotator in grouped.items():
            for annotator, intervals in by_annotator.items():
                _check_overlaps(path, video, annotator, intervals)
    scores = [i.score for by_annotator in grouped.values() for intervals in by_annotator.values() for i in intervals]
    if given_scale is not None:
        low, high = _check_scale(given_scale, path)
        outside = [s for s in scores if not low <= s <= high]
        if outside:
            raise AnnotationError(f"{path}: score {outside[0]:g} is outside the declared scale [{low:g}, {high:g}]")
    elif style == "summe":
        low, high = 0.0, 1.0
    else:
        low, high = min(scores), max(scores)
        if low == high:
            raise AnnotationError(f"{path}: every score is {low:g}: importance scores must differ somewhere "
                                  "(or declare the scale)")
    videos = {video: VideoAnnotation(video, tuple(by_annotator),
                                     {a: tuple(sorted(iv, key=lambda i: (i.start, i.end)))
                                      for a, iv in by_annotator.items()})
              for video, by_annotator in grouped.items()}
    return AnnotationFile(path, style, unit, (low, high), given_scale is not None, videos)


# --------------------------------------------------------------------------------------------
# per-frame form


def frame_ranges(annotation: AnnotationFile, video: str, frame_starts: np.ndarray, duration: float,
                 ) -> dict[str, list[tuple[int, int, float]]]:
    """Every annotator's rows of ``video`` as ``(first frame, end frame exclusive, score)``.

    ``frame_starts``: each decoded frame's presentation time in seconds from the first frame (used with
    ``unit: seconds``: a frame belongs to ``[start, end)`` when its start time does); ``duration``: the video's
    length in seconds (the last frame's end). A range that starts at or after the video's end, or ends more
    than one mean frame duration after it (seconds) or after the last frame (frames), is an error.
    """
    frame_starts = np.asarray(frame_starts, np.float64)
    n_frames = len(frame_starts)
    tolerance = duration / max(n_frames, 1)  # rounding of a hand-written end time: one frame
    out: dict[str, list[tuple[int, int, float]]] = {}
    for annotator, intervals in annotation.videos[video].intervals.items():
        ranges = []
        for iv in intervals:
            if annotation.unit == "frames":
                if iv.end > n_frames:
                    raise AnnotationError(f"{annotation.path}: {iv.row}: frames [{iv.start:g}, {iv.end:g}) of {video} "
                                          f"are outside the video, which has {n_frames} frames (0 … {n_frames - 1})")
                first, stop = int(iv.start), int(iv.end)
            else:
                if iv.start >= duration or iv.end > duration + tolerance:
                    raise AnnotationError(f"{annotation.path}: {iv.row}: [{iv.start:g} s, {iv.end:g} s) of {video} "
                                          f"is outside the video, which lasts {duration:.3f} s")
                first = int(np.searchsorted(frame_starts, iv.start, side="left"))
                stop = int(np.searchsorted(frame_starts, iv.end, side="left"))
            ranges.append((first, stop, iv.score))
        out[annotator] = ranges
    return out


def user_frame_scores(annotation: AnnotationFile, video: str, frame_starts: np.ndarray,
                      duration: float) -> np.ndarray:
    """(n_annotators, n_frames) float64: each annotator's score of every frame (``tvsum``; frames outside every
    range get the scale's low end) or selection, 0/1 (``summe``), in the order the file names the annotators."""
    n_frames = len(frame_starts)
    low = annotation.scale[0] if annotation.style == "tvsum" else 0.0
    ranges = frame_ranges(annotation, video, frame_starts, duration)
    scores = np.full((len(ranges), n_frames), low, dtype=np.float64)
    for user, rows in enumerate(ranges.values()):
        for first, stop, score in rows:
            if annotation.style == "summe":
                if score:
                    scores[user, first:stop] = 1.0
            else:
                scores[user, first:stop] = score
    return scores


__all__ = ["COLUMNS", "DEFAULT_STYLE", "DEFAULT_UNIT", "STYLES", "TIME_UNITS", "AnnotationError", "AnnotationFile",
           "Interval", "VideoAnnotation", "frame_ranges", "load_annotations", "user_frame_scores"]

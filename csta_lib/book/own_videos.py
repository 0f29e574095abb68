"""The chapter "Your own videos": its default inputs and the build-and-split step it shows.

Every step is the library's: ``csta data build`` is :func:`csta_lib.runs.dataset_build.build_dataset`, ``csta data
split`` is :func:`csta_lib.runs.dataset_build.split_dataset`, training is the experiment grid on the built file
(:func:`csta_lib.runs.experiments.user_data`). This module finds the chapter's default inputs (the data mirror's
CC-BY clips and the example annotation file that ships in ``examples/own_videos``) and names its files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csta_lib.data.eccv16 import Eccv16Dataset, load_eccv16, sha256_file
from csta_lib.data.splits import Split
from csta_lib.errors import MissingDataError
from csta_lib.runs import locator
from csta_lib.runs.experiments import DataSource, user_data
from csta_lib.runs.store import DEFAULT_STORE_DIR
from csta_lib.runs.video.shots import DEFAULT_SHOTS, ShotSettings

EXAMPLE_DIR = locator.PROJECT_ROOT / "examples" / "own_videos"
#: The worked example's annotations: TVSum-style scores written by the developers (its README says how).
EXAMPLE_ANNOTATIONS = EXAMPLE_DIR / "annotations.csv"
#: The data names of the clips the example annotates (all CC-BY, in the data mirror).
EXAMPLE_VIDEOS = ("videos.bbb_trailer", "videos.bbb_mallard", "videos.bigbuckbunny", "videos.bikes",
                  "videos.carphone")


def default_work_dir(store_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the chapter writes the built file, its folds and the per-video encoding cache unless told: a folder
    ``own_videos`` beside the results store (``results/own_videos`` for the default store)."""
    return (Path(store_dir) if store_dir else DEFAULT_STORE_DIR).parent / "own_videos"


def example_videos() -> list[Path]:
    """The example's clips, found by the data locator; :class:`MissingDataError` names any that are missing."""
    found = {name: locator.find(name) for name in EXAMPLE_VIDEOS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MissingDataError(f"the example clips {', '.join(missing)} were not found (`csta data check` says "
                               "where they go); or pass your own videos (the chapter's `videos` parameter)")
    return [Path(found[name]) for name in EXAMPLE_VIDEOS]  # type: ignore[arg-type]


@dataclass(frozen=True)
class BuiltDataset:
    """What the chapter built: the eccv16 file, its folds, the build's summary and the grid's data source."""

    h5: Path
    splits_file: Path
    videos: list[Path]  # the source videos, in the order of the file's keys (video_1 ...)
    annotations: Path
    summary: dict[str, Any]
    folds: list[Split]
    source: DataSource

    def data(self) -> Eccv16Dataset:
        return load_eccv16(self.h5)

    def video_path(self, key: str) -> Path:
        """The source video of the file's video ``key``."""
        keys = [v["key"] for v in self.summary["per_video"]]
        return self.videos[keys.index(key)]

    def durations(self) -> dict[str, float]:
        """``{video key: duration in seconds}`` from the build summary."""
        return {v["key"]: float(v["duration_s"]) for v in self.summary["per_video"]}


def build_and_split(videos: Sequence[str | os.PathLike[str]], annotations: str | os.PathLike[str],
                    work_dir: str | os.PathLike[str], *, name: str = "own_videos", encoder: str | None = None,
                    style: str | None = None, folds: int = 5, seed: int = 0, jobs: int = 1,
                    shots: ShotSettings = DEFAULT_SHOTS) -> BuiltDataset:
    """``csta data build`` then ``csta data split`` into ``work_dir`` (``NAME.h5``, ``NAME_splits.txt``; the
    encoding cache beside them, so that a second run re-encodes nothing and writes the same bytes); ``shots``: how
    KTS cuts the videos (``csta data build``'s shot options)."""
    from csta_lib.runs.dataset_build import build_dataset, split_dataset  # imports PyAV

    folder = Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result = build_dataset(videos, annotations, folder / f"{name}.h5", name=name, encoder=encoder, style=style,
                           jobs=jobs, cache_dir=folder / "cache", shots=shots)
    splits_file = folder / f"{name}_splits.txt"
    chosen = split_dataset(result.out, splits_file, folds, seed)
    return BuiltDataset(result.out, splits_file, list(result.videos), Path(annotations), result.summary, chosen,
                        user_data(result.out, splits_file))


def shot_settings_text(summary: dict[str, Any]) -> str:
    """The shot settings a build used, in words (from its summary's ``shot_settings``)."""
    return ShotSettings.from_dict(summary["shot_settings"]).text()


def provenance_text(built: BuiltDataset) -> str:
    """One sentence: which videos, which annotations (and who made the example's), which encoder."""
    info = built.summary
    file = built.annotations.name
    example = (" (the worked example written by hand by the project's developers, not a benchmark)"
               if sha256_file(built.annotations) == sha256_file(EXAMPLE_ANNOTATIONS) else "")
    return (f"{info['videos']} videos ({info['duration_s']:.1f} s) built into {built.h5.name} by csta data build, "
            f"annotations {file}{example}, {info['style']} style; features: {info['feature_kind']} (encoder "
            f"{info['encoder']}), every {info['stride']}th frame; not SumMe or TVSum and not surrogate features.")


def warnings_text(summary: dict[str, Any]) -> str:
    """The build's warnings as a Markdown list under a heading line ("" when there are none); command-line options
    in them as code (Markdown would turn their ``--`` into a dash)."""
    warnings = [re.sub(r"(--[a-z][a-z-]*)", r"`\1`", w) for w in summary.get("warnings") or []]
    return ("**What the build warned about:**\n\n" + "\n".join(f"- {w}" for w in warnings)) if warnings else ""


def build_time_text(summary: dict[str, Any]) -> str:
    """How long the build took, in words: with the real-time factor when it encoded videos, and saying so when it
    reused every video's encoded form from an earlier build (then its time says nothing about encoding speed)."""
    cache = summary["cache"]
    if cache["encoded"] == 0:
        return (f"This run reused every video's encoded form from an earlier build (the cache is keyed by the sha256 "
                f"of each video's bytes and the settings) and took {summary['seconds']:.1f} s; "
                "`python benchmarks/build_dataset.py` times a build from nothing")
    reused = f", {cache['reused']} reused from an earlier build" if cache["reused"] else ""
    return (f"It took {summary['seconds']:.1f} s on this machine ({cache['encoded']} video(s) encoded now{reused}), "
            f"{summary['realtime_factor']:.1f} × real time; a second build re-encodes nothing (every video's encoded "
            "form is cached by the sha256 of its bytes and the settings)")


def per_video_frame(built: BuiltDataset) -> Any:
    """The build summary's per-video facts as a data frame for reading."""
    import pandas as pd

    frame = pd.DataFrame(built.summary["per_video"])
    frame["mean shot (s)"] = (frame["duration_s"] / frame["shots"]).round(1)
    frame["duration_s"] = frame["duration_s"].round(1)
    return frame.rename(columns={"key": "key", "video_name": "video", "n_frames": "frames", "n_steps": "steps",
                                 "shots": "KTS shots", "annotators": "annotators", "duration_s": "duration (s)"})


def folds_frame(built: BuiltDataset) -> Any:
    """One row per fold: its test videos (names and keys) and how many videos train."""
    import pandas as pd

    names = {v["key"]: v["video_name"] for v in built.summary["per_video"]}
    return pd.DataFrame([{"fold": f.index, "test videos": ", ".join(f"{names[k]} ({k})" for k in f.test_keys),
                          "training videos": len(f.train_keys)} for f in built.folds])

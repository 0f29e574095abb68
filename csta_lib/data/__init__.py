"""Readers for the files CSTA is trained and evaluated on: the eccv16 h5 feature files, TVSum/SumMe
annotations and split files. They read the paths they are given; finding a file by its logical name is
:mod:`csta_lib.runs.locator`'s job."""

from csta_lib.data.eccv16 import DATASETS, Eccv16Dataset, VideoData, check_dataset, load_eccv16
from csta_lib.data.splits import Split, load_splits

__all__ = [
    "DATASETS",
    "Eccv16Dataset",
    "Split",
    "VideoData",
    "check_dataset",
    "load_eccv16",
    "load_splits",
]

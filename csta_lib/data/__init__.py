"""Data access: the locator and manifest, readers for the eccv16 h5 files, TVSum/SumMe annotations
and split files, and the surrogate-dataset builder."""

from csta_lib.data.eccv16 import DATASETS, Eccv16Dataset, VideoData, check_dataset, load_eccv16
from csta_lib.data.locator import PROJECT_ROOT, data_roots, entry, find, locate, manifest, verify
from csta_lib.data.splits import Split, load_splits, official_splits
from csta_lib.data.surrogate import DEFAULT_CACHE_DIR, build_surrogate, resolve_features

__all__ = [
    "DATASETS",
    "DEFAULT_CACHE_DIR",
    "PROJECT_ROOT",
    "Eccv16Dataset",
    "Split",
    "VideoData",
    "build_surrogate",
    "check_dataset",
    "data_roots",
    "entry",
    "find",
    "load_eccv16",
    "load_splits",
    "locate",
    "manifest",
    "official_splits",
    "resolve_features",
    "verify",
]

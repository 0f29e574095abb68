"""Data access: the locator and manifest, readers for the eccv16 h5 files, TVSum/SumMe annotations
and split files, and the surrogate-dataset builder."""

from csta_lib.data.locator import data_roots, entry, find, locate, manifest, verify

__all__ = ["data_roots", "entry", "find", "locate", "manifest", "verify"]

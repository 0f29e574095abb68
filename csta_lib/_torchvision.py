"""The one place that imports torchvision.

The pinned ``torchvision==0.28.0`` wheel is built against CUDA torch. Beside the CPU build of
``torch==2.13.0`` its C++ operators fail to register, and importing torchvision dies inside the two
modules that register fake/autograd kernels for those operators (``torchvision._meta_registrations``
and ``torchvision._autograd_registrations``). We only need the model architectures, not the custom
operators (nms, roi_align, ...), so on such a machine we put empty stand-ins for those two modules in
``sys.modules`` before torchvision is imported. Where the operators load (a CUDA machine with the
matching torch), nothing is stubbed: the shim is a no-op.

Every module in ``csta_lib`` gets torchvision through :func:`import_torchvision`.
"""

from __future__ import annotations

import importlib
import sys
import types
from functools import lru_cache

_STUBBED = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def _torchvision_ops_load() -> bool:
    """True when torchvision's compiled operators can be registered beside this torch."""
    if "torchvision" in sys.modules:
        return True
    try:
        import torchvision  # noqa: F401  (a normal import is the cheapest honest probe)
    except (RuntimeError, OSError, ImportError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


@lru_cache(maxsize=1)
def import_torchvision() -> types.ModuleType:
    """Import torchvision, stubbing its operator registrations only where they cannot load."""
    if not _torchvision_ops_load():
        for name in _STUBBED:
            sys.modules.setdefault(name, types.ModuleType(name))
    return importlib.import_module("torchvision")

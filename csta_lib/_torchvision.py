"""The one place that imports torchvision.

The pinned ``torchvision==0.28.0`` wheel is built against CUDA torch. Beside the CPU build of
``torch==2.13.0`` its C++ operators fail to register, and importing torchvision dies inside the two
modules that register fake/autograd kernels for those operators (``torchvision._meta_registrations``
and ``torchvision._autograd_registrations``). We only need the model architectures, not the custom
operators (nms, roi_align, ...), so on such a machine we put empty stand-ins for those two modules in
``sys.modules`` before torchvision is imported. Where the operators load (a CUDA machine with the
matching torch), nothing is stubbed: the shim is a no-op.

Every module in ``csta_lib`` gets torchvision through :func:`import_torchvision`, or a model builder through
:func:`model_builder`. The latter imports GoogLeNet's module alone, without torchvision's package (whose
``__init__`` imports every model, ``torchvision.ops`` and through it ``torch._dynamo``: about 1.4 s of a
2-core CPU, most of the time a CSTA checkpoint takes to load); the other architectures import
``torchvision.ops`` themselves and come through the whole package.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

_STUBBED = ("torchvision._meta_registrations", "torchvision._autograd_registrations")
# Architectures whose module imports no torchvision.ops: builder name -> module.
_STANDALONE = {"googlenet": "torchvision.models.googlenet"}
# Held while sys.modules holds stand-ins for torchvision's packages, and by every import here (the video
# pipeline builds models in a background thread).
_LOCK = threading.RLock()


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
    with _LOCK:
        if not _torchvision_ops_load():
            for name in _STUBBED:
                sys.modules.setdefault(name, types.ModuleType(name))
        return importlib.import_module("torchvision")


def _import_alone(module: str) -> types.ModuleType:
    """Import ``module`` of torchvision with bare stand-ins for the ``torchvision`` and ``torchvision.models``
    packages (their ``__path__`` only), so that neither package's ``__init__`` runs; the stand-ins are
    removed afterwards, and a later :func:`import_torchvision` runs the real ones (reusing what was loaded)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        raise ImportError("torchvision is not installed")
    root = os.path.dirname(spec.origin)
    stand_ins = {}
    for name, folder in (("torchvision", root), ("torchvision.models", os.path.join(root, "models"))):
        stand_ins[name] = types.ModuleType(name)
        stand_ins[name].__path__ = [folder]
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module(module)
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


@cache
def model_builder(name: str) -> Callable[..., Any]:
    """torchvision's builder of the architecture ``name`` (``torchvision.models.<name>``), imported alone where
    its module allows it (see the module docstring), else through :func:`import_torchvision`."""
    with _LOCK:
        if name in _STANDALONE and "torchvision" not in sys.modules:
            try:
                return getattr(_import_alone(_STANDALONE[name]), name)
            except Exception:  # noqa: BLE001 - a torchvision laid out otherwise: the whole package instead
                for loaded in [m for m in sys.modules if m.startswith("torchvision.")]:
                    del sys.modules[loaded]
        return getattr(import_torchvision().models, name)

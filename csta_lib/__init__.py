"""csta_lib: a reference implementation of CSTA (Son, Park, Kim, CVPR 2024).

Submodules are imported on demand so that ``csta --help`` and the data tools start fast:
``config``, ``backbones``, ``model``, ``macs``, ``data``, ``evaluation``, ``kts``, ``train``,
``store``, ``experiments``, ``grid``, ``video``, ``cli``.
"""

__version__ = "0.1.0"

"""Runs: the machinery that applies the method to this project's files and machines.

Finding and fetching data (:mod:`~csta_lib.runs.locator`, :mod:`~csta_lib.runs.fetch`), surrogate features
(:mod:`~csta_lib.runs.surrogate`), training runs (:mod:`~csta_lib.runs.training`), the results store
(:mod:`~csta_lib.runs.store`), the paper's experiments and their grids (:mod:`~csta_lib.runs.experiments`,
:mod:`~csta_lib.runs.grid`), raw video to step features and summary video (the
package :mod:`~csta_lib.runs.video`), atomic file writes (:mod:`~csta_lib.runs.io`) and the comparison with the
official implementation's fixtures (:mod:`~csta_lib.runs.fidelity`). Modules here import the method
(``csta_lib.config``, ``model``, ``evaluation``, …), never the surfaces (``csta_lib.cli``, ``csta_lib.book``).
"""

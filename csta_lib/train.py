"""How CSTA is trained, as the official code trains it: the objective, the optimiser and one step.

Specified on the book's method page, section method-loss. Adam with coupled L2 weight decay, MSE between the
model's (T,) scores and the h5 ``gtscore``, one whole video per optimiser step, 100 epochs. Running a training
job (data, seeds, epochs, checkpoints, model selection, the record) is :mod:`csta_lib.runs.training`'s work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

PAPER_LR = 1e-3
PAPER_WEIGHT_DECAY = 1e-7
PAPER_EPOCHS = 100


def make_optimizer(parameters: Any, lr: float, weight_decay: float) -> Any:
    """The official optimiser: Adam (coupled L2 weight decay, default betas), as torch's fused kernel
    where every parameter allows it (CPU or CUDA floating point): one pass over each tensor instead of
    about ten, same update formula (results agree to float rounding, ~1e-7 per step)."""
    params = list(parameters)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def training_step(model: Any, optimizer: Any, features: Any, target: Any,
                  before_update: Callable[[], None] | None = None) -> Any:
    """One optimiser step on one video, as the official code trains: MSE between the model's scores for
    ``features`` (T, 1024) and the ``target`` gtscore (T,), backward, Adam update. Returns the loss before
    the update (detached). ``before_update`` runs between backward and the update (to read gradients)."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.mse_loss(model(features), target)
    loss.backward()
    if before_update is not None:
        before_update()
    optimizer.step()
    return loss.detach()

"""A bank's fitting recipe: `SeparableFilters.recommended_loss` and `recommended_optimizer`
(their docstrings say what the settings mean and how they were measured)."""

from __future__ import annotations

import math
from typing import Any

import optax

from .._losses import L2, AbstractLoss, KeepZeros, NonNegative
from .._validate import check_positive_int, check_scalar
from ._checks import check_peak, check_weight

# `NonNegative`'s smoothing in the recommended loss, at peak 1: the plain hinge's
# gradient, which does not shrink at 0, kicked a near-exact fit's zero taps at every
# step (at non_negative=4 and rank 8, 500 steps: a comet 0.0244 against 0.0134 with it,
# a 21-tap disk 0.0057 against 0.0032); it leaves negatives to about -2e-4 of the peak.
SMOOTHING = 3e-4


def recommended_loss(non_negative: Any, keep_zeros: Any, peak: Any) -> AbstractLoss:
    """`L2() + a NonNegative(smoothing) + b KeepZeros()`, the penalties scaled by `peak`
    (linear in the kernel where L2 is quadratic: the weights mean the same at any scale)."""
    non_negative = check_weight(non_negative, "non_negative")
    keep_zeros = check_weight(keep_zeros, "keep_zeros")
    peak = check_peak(peak)
    smooth = NonNegative(smoothing=SMOOTHING * peak)
    return L2() + (non_negative * peak) * smooth + (keep_zeros * peak) * KeepZeros()


def recommended_optimizer(
    learning_rate: Any, decay_steps: Any, peak: Any
) -> optax.GradientTransformation:
    """Adam with a cosine decay, its steps and gradients scaled to a kernel at peak 1."""
    learning_rate = check_scalar(learning_rate, "learning_rate", lower=0.0)
    decay_steps = check_positive_int(decay_steps, "decay_steps")
    peak = check_peak(peak)
    schedule = optax.cosine_decay_schedule(
        learning_rate * math.sqrt(peak), decay_steps, alpha=1e-3
    )
    # Adam sees the gradients of the kernel at peak 1: squared, a kernel's own
    # (`peak ** 1.5`) left float32 (peak 1e-10 fitted to garbage, 1e16 never moved).
    return optax.chain(optax.scale(peak**-1.5), optax.adam(schedule, eps=1e-6))

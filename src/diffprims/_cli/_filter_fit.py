"""`diffprims filter`'s fit: from the SVD and the NMF starts, the lowest loss kept."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

#: A kernel with a value below -NEGATIVE of its peak has negative lobes of its own,
#: which the default loss keeps (its NONNEG weight is 0; the library's applies
#: otherwise), and no NMF start (`from_nmf` refuses it, at the same threshold).
NEGATIVE = 1e-6

#: What the command's last line says of the bank kept, where it is not the SVD's fit.
KEPT_NOTE = {
    "svd": "kept the SVD start, which the fits did not improve on",
    "nmf": "kept the NMF start, which the fits did not improve on",
    "fitted_from_nmf": "kept the fit from the NMF start, lower than the SVD's",
}

#: L-BFGS steps that polish the kept bank: Adam's steps keep the learning rate's size
#: however small the gradient, so its fits stop a little short (a 13-tap anti-aliased disk
#: at rank 4: 0.01465 from the SVD, 0.01462 from the NMF, polished 0.01457, a 2000-update
#: NMF 0.01457; a 37-tap hexagon at rank 8: 0.059484 -> 0.059432, and 0.059426 after 200).
POLISH_STEPS = 100

#: How much lower (relative) a later candidate's loss must be to be kept over an earlier
#: one: ties are float32 rounding, not a better bank.
TIE = 1e-6

#: What was running, for the line a Ctrl-C prints.
PHASES = {
    "svd": "the fit from the SVD start", "nmf start": "the NMF start",
    "nmf": "the fit from the NMF start", "polish": "the L-BFGS polish",
}  # fmt: skip


def kept_note(kept: str, polished: bool) -> str:
    """The last line's words on the bank written ("" for the SVD's fit unpolished)."""
    said = KEPT_NOTE.get(kept, "")
    if polished:
        said = f"{said}, then polished by L-BFGS" if said else "polished the fit by L-BFGS"
    return f"{said}; " if said else ""


def fit_bank(
    args: argparse.Namespace, start: Any, target: Any, loss: Any
) -> tuple[Any, bool, str, bool]:
    """`(result, interrupted, kept, polished)`: the lowest loss on the whole kernel of
    the SVD start, the fit from it and, for a non-negative kernel, its NMF and the fit
    from that (`kept` says which: "svd", "fitted", "nmf" or "fitted_from_nmf"), then
    polished by L-BFGS where that lowers it (`polished`). `result.losses` are those of
    the fit the bank comes from (a start's: its own fit's), `result.seconds` the wall
    time of all of it, the NMF included.

    Either fit may end the lower (the NMF's on a 17-tap disk at rank 4: 0.1151 against
    0.1171; the SVD's on most kernels), and a start may be lower than its fit: an exact
    SVD (at a rank the kernel has), which Adam's first steps, the learning rate's size
    however small the gradient, only push away (7e-8 -> 3e-3 on a 21-tap disk at rank
    8). After Ctrl-C (in a fit or in the NMF), the lowest of what was reached."""
    import equinox as eqx
    import optax

    import diffprims as dp

    began, goal = time.perf_counter(), target[..., None]
    adam = dp.SeparableFilters.recommended_optimizer()

    def fit(bank: Any, optimizer: Any, steps: int, phase: str) -> Any:
        return dp.fit(bank, goal, loss=loss, steps=steps, optimizer=optimizer,
                      progress=False if args.quiet else phase)  # fmt: skip

    # Each start is a candidate in its own fit's place (its losses, its steps).
    starts: dict[str, Any] = {"svd": start}
    fits: dict[str, Any] = {}  # by start, and "polish"
    values: dict[str, float] = {}  # the candidates' losses (each a pass on the kernel)
    running, interrupted = "svd", True
    try:
        fits["svd"] = fit(start, adam, args.steps, "from the SVD")
        if float(target.min()) >= -NEGATIVE:  # (a signed kernel has no NMF)
            running = "nmf start"
            starts["nmf"] = dp.SeparableFilters.from_nmf(target, args.rank)
            running = "nmf"
            fits["nmf"] = fit(starts["nmf"], adam, args.steps, "from the NMF")
        running = "polish"
        bank = _candidates(starts, fits)[_lowest(starts, fits, goal, loss, values)].model
        fits["polish"] = fit(bank, optax.lbfgs(), min(POLISH_STEPS, args.steps), "L-BFGS polish")
        interrupted = False
    except (dp.FitInterrupted, KeyboardInterrupt) as stop:
        # Ctrl-C: write the lowest reached (a second Ctrl-C stops the writing).
        if "svd" not in fits and not isinstance(stop, dp.FitInterrupted):
            raise  # nothing reached yet: stopped as before any fit
        after = ""
        if isinstance(stop, dp.FitInterrupted):
            fits[running], after = stop.result, f" after {stop.step} steps"
        print(f"interrupted in {PHASES[running]}{after}; writing the results so far (Ctrl-C "
              "again stops the writing)", file=sys.stderr)  # fmt: skip
    polish = fits.pop("polish", None)
    kept = _lowest(starts, fits, goal, loss, values)
    result = _candidates(starts, fits)[kept]
    polished = polish is not None and _value(polish.model, goal, loss) < values[kept]
    if polish is not None and polished:
        result = eqx.tree_at(lambda r: r.model, result, polish.model)
    result = eqx.tree_at(lambda r: r.seconds, result, time.perf_counter() - began)
    return result, interrupted, kept, polished


def _value(bank: Any, goal: Any, loss: Any) -> float:
    return float(loss(bank.render_image(goal.shape[:2]), goal))


def _candidates(starts: dict[str, Any], fits: dict[str, Any]) -> dict[str, Any]:
    """The fits' results by name ("fitted", "fitted_from_nmf"), then the starts ("svd",
    "nmf"), each in its own fit's result (in the SVD fit's if its own never ran)."""
    import equinox as eqx

    named = {("fitted" if s == "svd" else f"fitted_from_{s}"): r for s, r in fits.items()}
    for name, bank in starts.items():
        place = fits.get(name, fits["svd"])
        named[name] = eqx.tree_at(lambda r: r.model, place, bank)
    return named


def _lowest(
    starts: dict[str, Any], fits: dict[str, Any], goal: Any, loss: Any, values: dict[str, float]
) -> str:
    """The name of the lowest loss among the candidates, their losses kept in `values` (a
    candidate's stays the same: the polish is apart).

    Within `TIE` of each other, the first in `_candidates`' order is kept (the fit from
    the SVD, then from the NMF, then the starts): two fits that reach one optimum differ
    in float32's last digits (0.019443402 against 0.019443404 on a 9-tap disk at rank 2),
    which another machine's rounding may turn over."""
    named = _candidates(starts, fits)
    best = None
    for name, result in named.items():
        if name not in values:
            values[name] = _value(result.model, goal, loss)
        if best is None or values[name] < values[best] * (1 - TIE):
            best = name
    assert best is not None
    return best

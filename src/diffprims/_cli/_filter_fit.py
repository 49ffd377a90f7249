"""`diffprims filter`'s fit: from the SVD and the NMF starts, the lowest loss kept."""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: What the command's last line says of the bank kept, where it is not the SVD's fit.
KEPT_NOTE = {
    "svd": "kept the SVD start, which the fits did not improve on; ",
    "nmf": "kept the NMF start, which the fits did not improve on; ",
    "fitted_from_nmf": "kept the fit from the NMF start, lower than the SVD's; ",
}


#: L-BFGS steps that polish the kept bank: Adam's steps keep the learning rate's size
#: however small the gradient, so its fits stop a little short (a 13-tap anti-aliased disk
#: at rank 4: 0.01460, NMF's 0.01457, polished 0.01457; the comet at rank 8: 0.0122 ->
#: 0.0117).
POLISH_STEPS = 200


def fit_bank(
    args: argparse.Namespace, start: Any, target: Any, loss: Any, negative: float
) -> tuple[Any, bool, str, bool]:
    """`(result, interrupted, kept, polished)`: the lowest loss on the whole kernel of
    the SVD start, the fit from it and, for a non-negative kernel, its NMF and the fit
    from that (`kept` says which: "svd", "fitted", "nmf" or "fitted_from_nmf"), then
    polished by L-BFGS where that lowers it (`polished`); `result.losses` are those of
    the fit kept (of the first for a start), `result.seconds` all the fits' time.

    Either fit may end the lower (the NMF's on a 17-tap disk at rank 4: 0.1151 against
    0.1171; the SVD's on most kernels), and a start may be lower than its fit: an exact
    SVD (at a rank the kernel has), which Adam's first steps, the learning rate's size
    however small the gradient, only push away (3e-7 -> 2e-3 on a disk). After Ctrl-C,
    the lowest of what was reached."""
    import equinox as eqx
    import optax

    import diffprims as dp

    def fit(bank: Any, optimizer: Any, steps: int) -> Any:
        return dp.fit(bank, target[..., None], loss=loss, steps=steps, optimizer=optimizer,
                      progress=not args.quiet)  # fmt: skip

    starts = {"svd": start}
    if float(target.min()) >= -negative:  # (a signed kernel has no NMF)
        starts["nmf"] = dp.SeparableFilters.from_nmf(target, args.rank)
    results: dict[str, Any] = {}
    kept = name = ""
    try:
        for name, bank in starts.items():
            name = "fitted" if name == "svd" else f"fitted_from_{name}"
            results[name] = fit(bank, dp.SeparableFilters.recommended_optimizer(), args.steps)
        kept, name = _lowest(starts, results, target, loss), "polished"
        results[name] = fit(results[kept].model, optax.lbfgs(), min(POLISH_STEPS, args.steps))
        interrupted = False
    except dp.FitInterrupted as stop:
        # Ctrl-C: write what the fit reached (a second Ctrl-C stops the writing).
        print(f"interrupted after {stop.step} steps; writing the results so far (Ctrl-C "
              "again stops the writing)", file=sys.stderr)  # fmt: skip
        results[name], interrupted = stop.result, True
    best = _lowest(starts, results, target, loss)
    # The losses (and steps) of the Adam fit or start the kept bank comes from, the time
    # of all the fits.
    source = kept if best == "polished" else best
    seconds = sum(float(r.seconds) for name, r in results.items() if name not in starts)
    result = eqx.tree_at(
        lambda r: (r.model, r.seconds), results[source], (results[best].model, seconds)
    )
    return result, interrupted, source, best == "polished"


def _lowest(starts: dict[str, Any], results: dict[str, Any], target: Any, loss: Any) -> str:
    """The name of the lowest loss on the whole kernel among `results` and the starts
    (which it adds to `results`, each in the first result's place); a fit where it ties
    its start."""
    import equinox as eqx

    goal = target[..., None]
    value = lambda bank: float(loss(bank.render_image(target.shape), goal))  # noqa: E731
    first = next(iter(results.values()))
    for name, bank in starts.items():
        results.setdefault(name, eqx.tree_at(lambda r: r.model, first, bank))
    return min(results, key=lambda name: value(results[name].model))

"""`fit`: argument checks, the step loop, the run driver, checkpoints."""

from ._fit import fit as fit
from ._result import FitResult as FitResult

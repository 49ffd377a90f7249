"""Separable filter banks and the target kernels they approximate."""

from ._bank import SeparableFilters as SeparableFilters
from ._filtered import Filtered as Filtered

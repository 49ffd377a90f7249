"""`paint`: approximate an image with shapes (schedule, placement, colour solve)."""

from ._paint import paint as paint

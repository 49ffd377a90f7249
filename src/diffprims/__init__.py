"""diffprims: differentiable 2D primitives in JAX.

Soft shape sets that render to images, separable filter banks, composable losses and
one `fit()` for all of them. Images are `(H, W, C)` float in `[0, 1]` everywhere;
functions are unbatched (batch with `jax.vmap`).
"""

from . import (
    _loading as _loading,  # first: when loading began (`diffprims paint --seconds`)
    kernels as kernels,
    roles as roles,
)
from ._errors import (
    CheckpointError as CheckpointError,
    FitDivergedError as FitDivergedError,
    FitInterrupted as FitInterrupted,
    LoadError as LoadError,
)
from ._filters import Filtered as Filtered, SeparableFilters as SeparableFilters
from ._fit import FitResult as FitResult, fit as fit
from ._gif import save_gif as save_gif
from ._image import (
    demo_image_path as demo_image_path,
    load_image as load_image,
    psnr as psnr,
)
from ._image_losses import SSIM as SSIM, edge_weights as edge_weights
from ._image_save import save_image as save_image
from ._io import load as load, save as save
from ._losses import (
    L1 as L1,
    L2 as L2,
    AbstractLoss as AbstractLoss,
    AbstractPointwiseLoss as AbstractPointwiseLoss,
    KeepZeros as KeepZeros,
    Loss as Loss,
    NonNegative as NonNegative,
    Scaled as Scaled,
    Sum as Sum,
    Weighted as Weighted,
)
from ._model import AbstractModel as AbstractModel, pixel_centres as pixel_centres
from ._paint import paint as paint
from ._shapes import (
    AbstractShapes as AbstractShapes,
    Circles as Circles,
    Ellipses as Ellipses,
    Gaussians as Gaussians,
    Layers as Layers,
    Rectangles as Rectangles,
    Role as Role,
    Triangles as Triangles,
    parameter as parameter,
    save_svg as save_svg,
    soft_edge as soft_edge,
    svg_soft_edge as svg_soft_edge,
    to_svg as to_svg,
)

__version__ = "0.2.0.dev0"

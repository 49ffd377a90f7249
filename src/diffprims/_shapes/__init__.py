"""Shape sets: the base, parameter roles, compositing, renderers, SVG, one file per type."""

from ._base import AbstractShapes as AbstractShapes
from ._circles import Circles as Circles
from ._compositing import MODES as MODES, layer_weights as layer_weights
from ._ellipses import Ellipses as Ellipses
from ._gaussians import Gaussians as Gaussians
from ._geometry import soft_edge as soft_edge
from ._kind import Shortfall as Shortfall, not_a_shape_type as not_a_shape_type
from ._layers import Layers as Layers
from ._protocol import check_shape_type as check_shape_type
from ._rectangles import Rectangles as Rectangles
from ._roles import Role as Role, parameter as parameter
from ._svg import save_svg as save_svg, to_svg as to_svg
from ._svg_edges import svg_soft_edge as svg_soft_edge
from ._triangles import Triangles as Triangles

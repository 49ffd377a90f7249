"""A user's shape type that breaks the protocol is refused at the boundary, naming it."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import diffprims as dp

from .test_custom_shape import UserCircles, _BadGeometry

TARGET = jnp.full((8, 8, 3), 0.5)


def _paint(cls):
    return dp.paint(TARGET, 4, key=jax.random.key(0), shape=cls, steps=2, rounds=1)


@pytest.mark.parametrize(
    "offset, hole, field",
    [(-1.0, 0.5, "raw_radii"), (0.0, 1.5, "raw_holes"), (0.0, float("nan"), "raw_holes")],
)
def test_paint_checks_random_geometry_values_as_init_does(offset, hole, field):
    # paint draws its shapes inside compiled programs that drop traced checks: negative
    # radii became invisible 1e-30 circles, a hole of 1.5 a full disc, in silence.
    cls = type("OutOfDomain", (_BadGeometry,), {"radii_offset": offset, "hole": hole})
    pattern = rf"OutOfDomain\.random_geometry must give `{field}` values"
    with pytest.raises(ValueError, match=pattern):
        cls.init(3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=pattern):
        _paint(cls)


class IntCoverage(UserCircles):
    def coverage(self, points, edge_width):
        return (super().coverage(points, edge_width) > 0.5).astype(jnp.int32)


class BoolCoverage(UserCircles):
    def coverage(self, points, edge_width):
        return super().coverage(points, edge_width) > 0.5


@pytest.mark.parametrize("cls", [IntCoverage, BoolCoverage])
@pytest.mark.parametrize(
    "call",
    [lambda cls: cls.init(10, key=jax.random.key(0)).render_image((16, 16)), _paint],
    ids=["render", "paint"],
)
def test_a_coverage_that_is_not_float_is_a_type_error_naming_it(cls, call):
    # Was accepted: the geometry rendered, but got zero gradients and never moved.
    pattern = rf"{cls.__name__}\.coverage\(points, edge_width\) must return floats in \[0, 1\]"
    with pytest.raises(TypeError, match=pattern) as info:
        call(cls)
    assert "smooth function of the parameters" in str(info.value)


class SharedGain(UserCircles):
    gain: float = dp.parameter(dp.roles.SIZE, per_shape=False, default=1.0)


class RowGain(UserCircles):
    gain: float = dp.parameter(dp.roles.SIZE, default=1.0)


class Setting(UserCircles):
    gain: int = 5  # undeclared, not static: a GEOMETRY parameter


@pytest.mark.parametrize("cls", [SharedGain, RowGain, Setting])
@pytest.mark.parametrize(
    "call", [lambda cls: cls.init(3, key=jax.random.key(0)), _paint], ids=["init", "paint"]
)
def test_a_parameter_field_holding_a_number_is_a_type_error_naming_it(cls, call):
    # A shared one was accepted and never trained; a per-shape one said "`gain` must
    # have leading axis N=3; got shape ()", naming neither the class nor the cause.
    with pytest.raises(
        TypeError, match=rf"`gain` of {cls.__name__} holds \w+ [\d.]+, not an array"
    ) as info:
        call(cls)
    for hint in ("`jnp.asarray(...)`", "eqx.field(static=True"):
        assert hint in str(info.value)


def test_a_static_setting_and_an_array_parameter_are_accepted():
    class Fine(UserCircles):
        gain: jax.Array = dp.parameter(
            dp.roles.SIZE, per_shape=False, default_factory=lambda: jnp.asarray(1.0)
        )
        lobes: int = eqx.field(static=True, default=5, kw_only=True)

    model = Fine.init(3, key=jax.random.key(0))
    assert model.gain.shape == () and model.lobes == 5


@pytest.mark.parametrize(
    "change, pattern",
    [
        (
            {"raw_opacities": jnp.zeros(5)},
            r"opacities must have shape \(3,\).*this UserCircles set",
        ),
        ({"raw_background": jnp.zeros(2)}, r"background must have shape \(3,\).*this UserCircles"),
        ({"raw_radii": jnp.zeros(2)}, r"`raw_radii` must have leading axis N=3.*this UserCircles"),
        ({"softness": -1.0}, r"`softness` of a UserCircles set must be a finite float > 0"),
        ({"compositing": "under"}, r"`compositing` of a UserCircles set must be one of"),
        ({"raw_depths": jnp.zeros(3)}, r"`raw_depths` of a UserCircles set is only used with"),
    ],
)
def test_a_malformed_set_is_named_by_its_class(change, pattern):
    model = UserCircles.init(3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=pattern):
        dataclasses.replace(model, **change)


class InstanceGeometry(UserCircles):
    def random_geometry(self, centres, sizes, *, key):  # pyright: ignore[reportIncompatibleMethodOverride]
        return {"raw_centres": centres, "raw_radii": sizes}


@pytest.mark.parametrize(
    "call",
    [
        lambda cls: cls.init(3, key=jax.random.key(0)),
        _paint,
        lambda cls: cls.from_geometry(
            {
                "raw_centres": ("centres", jnp.full((1, 2), 0.5), (2,)),
                "raw_radii": ("radii", jnp.array([0.2]), ()),
            },
            [[0.5] * 3],
            [1.0],
        ),
    ],
    ids=["init", "paint", "from_geometry"],
)
def test_random_geometry_without_classmethod_is_named(call):
    # Was "random_geometry() missing 1 required positional argument: 'sizes'".
    pattern = r"InstanceGeometry\.random_geometry must be a `@classmethod`.*got an instance method"
    with pytest.raises(TypeError, match=pattern):
        call(InstanceGeometry)


def _circles(**geometry):
    return UserCircles.from_geometry(geometry, jnp.full((2, 3), 0.5), jnp.ones(2))


CENTRES = ("centres", jnp.full((2, 2), 0.5), (2,))
RADII = ("radii", jnp.full((2,), 0.2), ())


@pytest.mark.parametrize(
    "geometry, wrong",
    [
        (
            {"raw_centres": CENTRES, "raw_radii": RADII, "raw_bogus": RADII},
            r"unknown \['raw_bogus'\]",
        ),
        ({"raw_centres": CENTRES}, r"missing \['raw_radii'\]"),
        (
            {"raw_colours": RADII, "raw_radii": RADII},
            r"unknown \['raw_colours'\]; missing \['raw_centres'\]",
        ),
    ],
    ids=["unknown", "missing", "both"],
)
def test_from_geometry_names_unknown_and_missing_fields(geometry, wrong):
    # Were a bare `KeyError: 'raw_bogus'` and "__init__() missing 1 required positional
    # argument: 'raw_radii'".
    fields = r"\['raw_centres', 'raw_radii'\]"
    pattern = rf"UserCircles\.from_geometry takes its geometry fields {fields}.*\({wrong}\)"
    with pytest.raises(ValueError, match=pattern):
        _circles(**geometry)


class SharedWidth(UserCircles):
    """Circles with one learned width for all (not drawn: only its storage matters)."""

    raw_width: jax.Array = dp.parameter(
        dp.roles.SIZE, per_shape=False, default_factory=lambda: jnp.asarray(0.0)
    )


def _shared(width):
    return SharedWidth.from_geometry(
        {"raw_centres": CENTRES, "raw_radii": RADII, "raw_width": ("width", width, ())},
        jnp.full((2, 3), 0.5),
        jnp.ones(2),
    )


def test_from_geometry_takes_a_shared_field_with_its_own_shape():
    # Every value had to be (N, *trailing): "`width` must have 1 dimensions".
    model = _shared(jnp.asarray(0.05))
    assert model.raw_width.shape == () and model.num_shapes == 2
    np.testing.assert_allclose(dp.roles.SIZE.value(model.raw_width), 0.05, rtol=1e-6)
    assert _shared(0.05).raw_width.shape == ()  # a Python float too
    with pytest.raises(
        ValueError, match=r"`width` is one value for every shape.*shape \(\).*got \(2,\)"
    ):
        _shared(jnp.full((2,), 0.05))
    with pytest.raises(ValueError, match=r"`width` must be > 0"):
        _shared(jnp.asarray(-0.05))


class NaNCoverage(UserCircles):
    def coverage(self, points, edge_width):  # 0 / 0 where a point sits on a centre, say
        return super().coverage(points, edge_width) * jnp.nan


def test_a_coverage_giving_nan_is_named_on_the_first_render():
    # NaN compares False with 0 and 1: the range check let it pass, and the render was
    # an image of NaN with no error.
    model = NaNCoverage.init(6, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"NaNCoverage\.coverage.*gives NaN.*1e-20"):
        model.render_image((16, 16))


class OutOfRangeInLayers(UserCircles):
    def coverage(self, points, edge_width):  # a signed distance: soft_edge forgotten
        offsets = points[None, :, :] - self.centres[:, None, :]
        return jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20) - self.radii[:, None]


def test_a_user_type_is_checked_inside_layers_too():
    # Layers composited each layer's alphas directly and never met the check: a coverage
    # out of [0, 1] rendered and fitted with no error (found by a review).
    layers = dp.Layers([dp.Circles.init(3, key=jax.random.key(1)),
                        OutOfRangeInLayers.init(6, key=jax.random.key(0))])  # fmt: skip
    with pytest.raises(ValueError, match=r"OutOfRangeInLayers\.coverage.*\[0, 1\]"):
        layers.render_image((16, 16))
    with pytest.raises(ValueError, match=r"OutOfRangeInLayers\.coverage.*\[0, 1\]"):
        dp.fit(layers, jnp.zeros((16, 16, 3)), steps=2)


class TransposedBounds(UserCircles):
    def bounds(self):
        return super().bounds().T


def test_transposed_bounds_are_named_as_such_for_any_number_of_shapes():
    # The probe drew 4 shapes: a (4, N) box array of 4 probe shapes was (N, 4), and the
    # type was told that its boxes were too small.
    model = TransposedBounds.init(4, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"TransposedBounds\.bounds\(\) must return shape"):
        model.render_image((16, 16))


class BroadcastsWithOneShape(UserCircles):
    """Right for one shape (as the renderers call it), wrong for several; and boxes at
    half the radius, which the probe refuses on their own."""

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)
        return dp.soft_edge(distance - self.radii[None, :], edge_width)

    def bounds(self):
        reach = 0.5 * self.radii[:, None]
        return jnp.concatenate([self.centres - reach, self.centres + reach], axis=-1)


def test_a_coverage_wrong_for_several_shapes_is_named_not_a_skipped_check():
    # The probe's own error was taken for one the render would name, and the bounds
    # check skipped: the tiled picture was silently wrong (0.24 from the scan's).
    model = BroadcastsWithOneShape.init(20, key=jax.random.key(0), size_range=(0.1, 0.2))
    pattern = r"BroadcastsWithOneShape\.coverage\(points, edge_width\) raised TypeError.*probe"
    with pytest.raises(TypeError, match=pattern):
        model.render_image((64, 64), method="tiled")


@pytest.mark.parametrize(
    "entry, got",
    [(("centres", [[0.5, 0.5]]), "a tuple of 2"), ([[0.5, 0.5]], "list"), ("centres", "str")],
)
def test_a_from_geometry_entry_of_the_wrong_form_is_named(entry, got):
    # Was "not enough values to unpack (expected at least 3, got 2)", naming nothing.
    geometry = {"raw_centres": entry, "raw_radii": ("radii", [0.1], ())}
    pattern = rf"UserCircles\.from_geometry's entry for `raw_centres` must be a tuple.*{got}"
    with pytest.raises(TypeError, match=pattern):
        UserCircles.from_geometry(geometry, [[1.0, 0.0, 0.0]], [1.0])


class _SharedGain(UserCircles):
    raw_gain: Float[Array, ""] = dp.parameter(dp.roles.SIZE, per_shape=False)

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        values = super().random_geometry(centres, sizes, key=key)
        return {**values, "raw_gain": jnp.full(sizes.shape, 0.3)}  # one per shape: wrong


def test_a_shared_field_given_one_value_per_shape_is_named_by_init():
    # init took it, and every render then said coverage must return (1, 64).
    with pytest.raises(ValueError, match=r"must give `raw_gain`, a field shared.*\(2,\).*\(3,\)"):
        _SharedGain.init(10, key=jax.random.key(0))


class _NoEdgeWidth(UserCircles):
    def coverage(self, points):  # pyright: ignore[reportIncompatibleMethodOverride]
        return super().coverage(points, 0.01)


class _BoundsWithArgument(UserCircles):
    def bounds(self, edge_width):  # pyright: ignore[reportIncompatibleMethodOverride]
        return super().bounds()


class _NoKey(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes):  # pyright: ignore[reportIncompatibleMethodOverride]
        return {"raw_centres": centres, "raw_radii": sizes}


@pytest.mark.parametrize(
    "cls, method",
    [(_NoEdgeWidth, "coverage"), (_BoundsWithArgument, "bounds"), (_NoKey, "random_geometry")],
)
def test_a_method_that_cannot_take_diffprims_arguments_is_named(cls, method):
    # Was Python's "takes 2 positional arguments but 3 were given" from inside a render.
    pattern = rf"{cls.__name__}\.{method} must be `def {method}\(.*its signature is"
    with pytest.raises(TypeError, match=pattern):
        cls.init(3, key=jax.random.key(0)).render_image((8, 8))


class _UndeclaredShared(UserCircles):
    line: Float[Array, ""] = eqx.field(default_factory=lambda: jnp.asarray(0.1))


def test_a_shared_value_without_a_declaration_is_told_how_to_declare_it():
    with pytest.raises(ValueError, match=r"`line` must have leading axis N=4.*per_shape=False"):
        _UndeclaredShared.init(4, key=jax.random.key(0))


class _AssertsOnValues(UserCircles):
    def __check_init__(self):  # a plain assert on values: its shapes never reach 0.2
        assert np.all(np.asarray(self.radii) < 0.2), "radii must be < 0.2"


class _NaNPastItsSizes(UserCircles):
    raw_k: Float[Array, " N"] = dp.parameter(dp.roles.GEOMETRY)

    def coverage(self, points, edge_width):  # the NaN of a shape it cannot make shows here
        return super().coverage(points, edge_width) + 0 * self.raw_k[:, None]

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):  # defined for sizes under 0.2 only
        return {"raw_centres": centres, "raw_radii": sizes, "raw_k": jnp.sqrt(0.04 - sizes**2)}


@pytest.mark.parametrize("cls", [_AssertsOnValues, _NaNPastItsSizes])
def test_probe_shapes_the_type_cannot_make_skip_the_probe(cls):
    # The probe's largest shape (0.3) is outside what these types make: an AssertionError
    # from its constructor, or a NaN geometry blamed on `coverage`, stopped the first render.
    model = cls.init(20, key=jax.random.key(0), size_range=(0.01, 0.1))
    assert jnp.all(jnp.isfinite(model.render_image((16, 16))))


class _OwnError(ValueError):
    pass


class _RefusesOddCounts(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        if centres.shape[0] % 2:
            raise _OwnError("even n only")
        return super().random_geometry(centres, sizes, key=key)


def test_a_users_own_exception_class_comes_out_as_it_is():
    # Naming the method made every ValueError a plain one: `except _OwnError` missed it.
    with pytest.raises(_OwnError, match="even n only"):
        _RefusesOddCounts.init(3, key=jax.random.key(0))


class _GuardedCheck(UserCircles):
    def __check_init__(self):  # a common pattern: values checked when they are values
        if not isinstance(self.raw_radii, jax.core.Tracer) and np.any(self.radii > 0.1):
            raise ValueError("radii must be <= 0.1")


def test_init_runs_a_check_that_passes_over_tracers_on_the_values():
    # Compiled, init saw tracers only: the check passed, and the shapes it refuses came
    # back (the refusal came later, from a render or a save).
    with pytest.raises(ValueError, match=r"radii must be <= 0.1"):
        _GuardedCheck.init(50, key=jax.random.key(0), size_range=(0.05, 0.2))
    assert _GuardedCheck.init(5, key=jax.random.key(0), size_range=(0.01, 0.1)).num_shapes == 5


class _OwnErrorOnSeveral(UserCircles):
    def coverage(self, points, edge_width):  # its own error, shown by the probe's 5 shapes
        if self.raw_radii.shape[0] > 1:
            raise _OwnError("one shape at a time")
        return super().coverage(points, edge_width)


def test_a_users_own_exception_class_comes_out_of_the_probe_as_it_is():
    # The probe said where it met an error by raising a plain ValueError of its own.
    model = _OwnErrorOnSeveral.init(3, key=jax.random.key(0))
    with pytest.raises(_OwnError, match="one shape at a time"):
        model.render_image((16, 16))


def test_layers_refusals_name_types_not_every_array():
    # A nested Layers (or a module where a set belongs) printed its whole repr, cut off
    # mid-array; a bare set passed as `layers` did the same.
    circles = dp.Circles.init(3, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"`layers\[0\]` is a Layers; Layers do not nest"):
        dp.Layers([dp.Layers([circles]), circles])
    with pytest.raises(TypeError, match=r"got L2 \(an equinox Module\)\.$"):
        dp.Layers([circles, dp.L2()])
    with pytest.raises(TypeError, match=r"got Circles .*`dp\.Layers\(\[shapes\]\)`"):
        dp.Layers(circles)


class _ForgetsRadii(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": centres}


class _NumpyGeometry(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": np.asarray(centres), "raw_radii": sizes}


@pytest.mark.parametrize(
    "cls, error, said",
    [(_ForgetsRadii, ValueError, r"_ForgetsRadii\.random_geometry must return the geometry"),
     (_NumpyGeometry, TypeError, r"_NumpyGeometry\.random_geometry is traced by JAX")],
)  # fmt: skip
def test_paint_names_random_geometry_not_the_constructor(cls, error, said):
    # paint said "...'s constructor (its __check_init__, if any) raised ValueError: ...
    # random_geometry must return ...", and the docs pointer twice.
    with pytest.raises(error, match=f"^{said}") as info:
        _paint(cls)
    assert "constructor" not in str(info.value)
    assert str(info.value).count("Write your own shape") == 1


@pytest.mark.parametrize("cls", [dp.Circles, UserCircles])
def test_a_geometry_field_of_the_wrong_trailing_shape_is_refused_by_the_constructor(cls):
    # Centres of shape (N,) were accepted (and saved), then rendered to an IndexError
    # from deep inside JAX.
    fields = dict(
        raw_colours=jnp.zeros((2, 3)), raw_opacities=jnp.zeros(2),
        raw_background=jnp.zeros(3), softness=1.0, raw_radii=jnp.zeros(2),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"`raw_centres` of a \w+ set must have shape \(N, 2\)"):
        cls(raw_centres=jnp.zeros((2,)), **fields)
    with pytest.raises(ValueError, match=r"shape \(N, 2\) as its annotation declares; got"):
        cls(raw_centres=jnp.zeros((2, 3)), **fields)
    cls(raw_centres=jnp.zeros((2, 2)), **fields)  # as declared


def test_an_integer_parameter_tells_a_user_type_how_to_build_from_values():
    fields = dict(
        raw_colours=jnp.zeros((2, 3), jnp.int32), raw_opacities=jnp.zeros(2),
        raw_background=jnp.zeros(3), softness=1.0, raw_radii=jnp.zeros(2),
        raw_centres=jnp.zeros((2, 2)),
    )  # fmt: skip
    with pytest.raises(TypeError, match=r"or from given values with `from_values`"):
        dp.Circles(**fields)
    with pytest.raises(TypeError, match=r"`from_geometry\(geometry, colours, opacities\)`"):
        UserCircles(**fields)  # (it has no `from_values` of its own)

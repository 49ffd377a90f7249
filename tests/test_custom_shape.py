"""A shape type written from the public API only is as good as ours."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import diffprims as dp


class UserCircles(dp.AbstractShapes):
    """`Circles` as a user writes it from the "Write your own shape" tutorial."""

    raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)
    raw_radii: Float[Array, " N"] = dp.parameter(dp.roles.SIZE)

    @property
    def centres(self):
        return dp.roles.POSITION.value(self.raw_centres)

    @property
    def radii(self):
        return dp.roles.SIZE.value(self.raw_radii)

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)
        return dp.soft_edge(distance - self.radii[:, None], edge_width)

    def bounds(self):
        reach = self.radii[:, None]
        return jnp.concatenate([self.centres - reach, self.centres + reach], axis=-1)

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": centres, "raw_radii": sizes}

    def svg_geometry(self, edge_width):
        return [
            f'<circle cx="{x:.6g}" cy="{y:.6g}" r="{r:.6g}"/>'
            for (x, y), r in zip(np.asarray(self.centres), np.asarray(self.radii), strict=True)
        ]


@pytest.fixture(scope="module")
def photo():
    return dp.load_image(dp.demo_image_path(), size=48)


def test_declared_roles_are_read_not_names():
    roles = UserCircles.parameter_roles()
    assert roles["raw_centres"] is dp.roles.POSITION and roles["raw_radii"] is dp.roles.SIZE
    assert roles == dp.Circles.parameter_roles()


def test_paint_on_a_user_shape_matches_ours(photo):
    """`dp.paint` on the user's circles lands within 0.1 dB of `dp.Circles`."""
    scores = {}
    for cls in (dp.Circles, UserCircles):
        result = dp.paint(photo, 24, key=jax.random.key(0), shape=cls, steps=300)
        scores[cls.__name__] = float(dp.psnr(result.model.render_image(photo.shape[:2]), photo))
    assert abs(scores["Circles"] - scores["UserCircles"]) < 0.1, scores


def test_user_shape_gets_every_renderer_and_init(photo):
    model = UserCircles.init(12, key=jax.random.key(1), target=photo)
    ours = dp.Circles.init(12, key=jax.random.key(1), target=photo)
    np.testing.assert_allclose(model.centres, ours.centres, atol=1e-6)
    for method in ("scan", "tiled"):
        np.testing.assert_allclose(
            model.render_image((32, 32), method=method),
            ours.render_image((32, 32), method=method),
            atol=1e-5,
        )
    taken = model.take(jnp.array([3, 1]))
    np.testing.assert_allclose(taken.radii, model.radii[jnp.array([3, 1])])


def test_undeclared_fields_count_as_geometry():
    class Plain(dp.AbstractShapes):
        centres: Float[Array, "N 2"]

        def coverage(self, points, edge_width):
            return jnp.zeros((self.centres.shape[0], points.shape[0]))

        def bounds(self):
            return jnp.concatenate([self.centres, self.centres], -1)

        @classmethod
        def random_geometry(cls, centres, sizes, *, key):
            return {"centres": centres}

        def svg_geometry(self, edge_width):
            return []

    assert Plain.parameter_roles()["centres"] is dp.roles.GEOMETRY
    model = Plain.init(3, key=jax.random.key(0))
    assert model.centres.shape == (3, 2) and float(model.centres.max()) <= 1.0


def test_role_round_trips_and_bad_roles():
    values = jnp.array([0.0, 0.25, 0.5, 1.0])
    for role in (dp.roles.POSITION, dp.roles.ANGLE, dp.roles.COLOUR):
        np.testing.assert_allclose(role.value(role.raw(values)), values, atol=1e-5)
    np.testing.assert_allclose(dp.roles.SIZE.value(dp.roles.SIZE.raw(values[1:])), values[1:])
    with pytest.raises(ValueError, match="kind"):
        dp.Role("speed")
    with pytest.raises(TypeError, match="Role"):
        dp.parameter("position")  # pyright: ignore[reportArgumentType]


class SwollenCircles(UserCircles):
    """Circles whose radii all scale by one learned factor: a field with no row per shape."""

    raw_swell: Float[Array, ""] = dp.parameter(
        dp.roles.GEOMETRY, per_shape=False, default_factory=lambda: jnp.asarray(0.2)
    )

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)
        reach = (1.0 + self.raw_swell) * self.radii[:, None]
        return dp.soft_edge(distance - reach, edge_width)

    def bounds(self):
        reach = (1.0 + self.raw_swell) * self.radii[:, None]
        return jnp.concatenate([self.centres - reach, self.centres + reach], axis=-1)


def test_shared_field_gets_the_same_gradient_from_every_renderer():
    # The tiled VJP scatters per-shape gradients into rows and sums the shared ones.
    model = SwollenCircles.init(30, key=jax.random.key(0))
    target = jax.random.uniform(jax.random.key(1), (32, 32, 3))

    def loss(method):
        return lambda m: jnp.mean((m.render_image((32, 32), method=method) - target) ** 2)

    scan, tiled = jax.grad(loss("scan"))(model), jax.grad(loss("tiled"))(model)
    assert abs(float(scan.raw_swell)) > 1e-4
    for a, b in zip(jax.tree.leaves(scan), jax.tree.leaves(tiled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)


class SwollenByGeometry(SwollenCircles):
    """The shared field set by `random_geometry` too (as a user's ring width would be)."""

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": centres, "raw_radii": sizes, "raw_swell": jnp.asarray(0.1)}


@pytest.mark.parametrize("cls", [SwollenCircles, SwollenByGeometry])
def test_paint_keeps_a_shared_field_shared(cls, photo):
    # paint scattered every value of `random_geometry` into shape rows: an IndexError on
    # a shared field.
    result = dp.paint(photo, 6, key=jax.random.key(0), shape=cls, steps=20, rounds=2)
    assert result.model.raw_swell.shape == ()
    assert bool(jnp.isfinite(result.model.raw_swell))
    assert float(dp.psnr(result.model.render_image(photo.shape[:2]), photo)) > 12.0


# -- a shape type that breaks the protocol is named, with what was expected ----------------


class Unfinished(dp.AbstractShapes):
    """Forgets `bounds`, `random_geometry` and `svg_geometry`."""

    raw_centres: Float[Array, "N 2"] = dp.parameter(dp.roles.POSITION)

    def coverage(self, points, edge_width):
        return jnp.zeros((self.raw_centres.shape[0], points.shape[0]))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Unfinished.init(3, key=jax.random.key(0)),
        lambda: dp.paint(jnp.full((8, 8, 3), 0.5), 3, key=jax.random.key(0), shape=Unfinished),
        lambda: Unfinished.from_geometry(
            {"raw_centres": ("centres", jnp.full((1, 2), 0.5), (2,))}, [[0.5] * 3], [1.0]
        ),
    ],
    ids=["init", "paint", "from_geometry"],
)
def test_a_forgotten_method_is_a_type_error_naming_it(build):
    with pytest.raises(TypeError, match="Unfinished") as info:
        build()
    message = str(info.value)
    for name in ("`bounds`", "`random_geometry`", "`svg_geometry`"):
        assert name in message, message
    assert "`coverage`, " not in message.split("Expected")[0], message


class Transposed(UserCircles):
    """Returns coverage as `(P, N)`: it broadcasts, and rendered silently wrong."""

    def coverage(self, points, edge_width):
        return super().coverage(points, edge_width).T


class WideCoverage(UserCircles):
    """A float64 constant in `coverage`: under `jax_enable_x64` its output is float64."""

    def coverage(self, points, edge_width):
        return super().coverage(points, edge_width) * np.float64(1.0)


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_a_coverage_wider_than_the_set_renders_under_x64(method):
    # It failed in the renderers' loops ("carry input and carry output must have equal
    # types"), naming neither the class nor `coverage`.
    with jax.enable_x64(True):
        model = WideCoverage.init(12, key=jax.random.key(0))
        image = model.render_image((32, 32), method=method)
        assert image.dtype == jnp.float32
        grads = jax.grad(lambda m: jnp.sum(m.render_image((32, 32), method=method)))(model)
        assert np.all(np.isfinite(grads.raw_centres))


class FlatBounds(UserCircles):
    def bounds(self):
        return super().bounds().reshape(-1)


class ListCoverage(UserCircles):
    """Returns coverage as a list of rows: JAX's TracerArrayConversionError came out."""

    def coverage(self, points, edge_width):
        return list(super().coverage(points, edge_width))


class ListBounds(UserCircles):
    def bounds(self):
        return list(super().bounds())


@pytest.mark.parametrize(
    "cls, method, renderer",
    [
        (ListCoverage, "coverage", "scan"),
        (ListCoverage, "coverage", "tiled"),
        (ListBounds, "bounds", "tiled"),
    ],  # fmt: skip
)
def test_a_list_instead_of_an_array_is_a_type_error_naming_it(cls, method, renderer):
    # (The scan renderer does not call `bounds`.)
    model = cls.init(10, key=jax.random.key(0))
    with pytest.raises(TypeError, match=rf"{cls.__name__}\.{method}\(.*must return one"):
        jax.block_until_ready(model.render_image((16, 16), method=renderer))


def _message(error) -> str:
    return str(error.value)


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_a_transposed_coverage_is_named_with_both_shapes(method):
    model = Transposed.init(10, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"Transposed\.coverage") as info:
        model.render_image((16, 16), method=method)
    assert "(N, P)" in _message(info) and "got shape (" in _message(info)
    with pytest.raises(ValueError, match=r"Transposed\.coverage"):
        jax.jit(lambda m: m.render_image((16, 16), method=method))(model)
    with pytest.raises(ValueError, match=r"\(N, P\) = \(10, 5\).*got shape \(5, 10\)"):
        model.alphas(jnp.full((5, 2), 0.5), pixel_size=0.1)


def test_wrong_bounds_are_named_with_both_shapes():
    model = FlatBounds.init(10, key=jax.random.key(0))
    # On the first render of the type, its probe shapes meet the mistake (5 of them).
    pattern = r"FlatBounds\.bounds\(\).*\(5, 4\).*got shape \(20,\).*5 probe shapes"
    with pytest.raises(ValueError, match=pattern):
        model.render_image((32, 32), method="tiled")


@pytest.mark.parametrize("cls", [Transposed, FlatBounds])
def test_paint_names_a_wrong_output_before_placing_shapes(cls):
    with pytest.raises(ValueError, match=cls.__name__):
        dp.paint(jnp.full((8, 8, 3), 0.5), 10, key=jax.random.key(0), shape=cls, steps=2)


class NoDict(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return centres, sizes


class WrongNames(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"centres": centres, "radii": sizes}


class WrongRows(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": centres.T, "raw_radii": sizes}


class NoSvg(UserCircles):
    def svg_geometry(self, edge_width):
        return None


@pytest.mark.parametrize(
    "cls, error, pattern",
    [
        (NoDict, TypeError, r"NoDict\.random_geometry must return a dict.*got tuple"),
        (WrongNames, ValueError, r"WrongNames\.random_geometry.*\['raw_centres', 'raw_radii'\]"),
        (WrongRows, ValueError, r"WrongRows\.random_geometry.*`raw_centres`.*N = 3.*\(2, 3\)"),
    ],
)
def test_random_geometry_output_is_checked(cls, error, pattern):
    with pytest.raises(error, match=pattern):
        cls.init(3, key=jax.random.key(0))


def test_svg_geometry_output_is_checked():
    with pytest.raises(TypeError, match=r"NoSvg\.svg_geometry\(\) must return a list"):
        dp.to_svg(NoSvg.init(3, key=jax.random.key(0)), (8, 8))


class Unsvgable(UserCircles):
    """A type with no SVG form, as "Write your own shape" says to write one."""

    def svg_geometry(self, edge_width):
        raise NotImplementedError


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: dp.Layers([m])], ids=["set", "layers"])
def test_a_shape_without_svg_is_a_type_error_naming_it(tmp_path, wrap):
    # Was a bare `NotImplementedError` with an empty message from inside `to_svg`.
    model = wrap(Unsvgable.init(3, key=jax.random.key(0)))
    pattern = r"Unsvgable has no SVG form.*NotImplementedError.*dp\.save_image"
    with pytest.raises(TypeError, match=pattern):
        dp.to_svg(model, (8, 8))
    with pytest.raises(TypeError, match=pattern):
        dp.save_svg(tmp_path / "a.svg", model, (8, 8))
    assert not (tmp_path / "a.svg").exists()


class NumpyCoverage(UserCircles):
    def coverage(self, points, edge_width):
        offsets = np.asarray(points)[None] - np.asarray(self.centres)[:, None]
        distance = np.sqrt((offsets**2).sum(-1)) - np.asarray(self.radii)[:, None]
        return dp.soft_edge(jnp.asarray(distance), edge_width)


class PythonIfBounds(UserCircles):
    def bounds(self):
        if float(self.radii.max()) > 1.0:
            raise AssertionError
        return super().bounds()


class NumpyGeometry(UserCircles):
    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": np.asarray(centres), "raw_radii": np.asarray(sizes)}


@pytest.mark.parametrize(
    "cls, call, method",
    [
        (NumpyCoverage, lambda m: m.render_image((16, 16)), r"coverage\(points, edge_width\)"),
        (PythonIfBounds, lambda m: m.render_image((64, 64), method="tiled"), r"bounds\(\)"),
        (
            NumpyGeometry,
            lambda m: dp.paint(
                jnp.full((8, 8, 3), 0.5), 4, key=jax.random.key(0), shape=type(m), steps=2
            ),  # fmt: skip
            "random_geometry",
        ),
    ],
)
def test_numpy_in_a_traced_method_is_a_type_error_naming_it(cls, call, method):
    # Was JAX's TracerArrayConversionError / ConcretizationTypeError from inside the
    # library's compiled programs, naming neither the method nor that it is traced.
    model = cls.init(10, key=jax.random.key(0))  # eager: init's random_geometry is fine
    pattern = rf"{cls.__name__}\.{method} is traced by JAX.*`jax\.numpy`.*JAX said: \w+Error"
    with pytest.raises(TypeError, match=pattern):
        call(model)


class CheckedByNumpy(UserCircles):
    def __check_init__(self):
        if np.any(np.asarray(self.raw_radii) > 1e6):
            raise ValueError("radii too large")


def test_a_constructor_reading_values_cannot_paint_and_says_so():
    # `init` builds it eagerly, as the tutorial says; `paint` builds sets under `jit`:
    # was JAX's TracerArrayConversionError from inside the library's shape check.
    assert CheckedByNumpy.init(3, key=jax.random.key(0)).num_shapes == 3
    pattern = r"CheckedByNumpy's constructor .*`__check_init__`.*eqx\.error_if"
    with pytest.raises(TypeError, match=pattern):
        dp.paint(jnp.full((8, 8, 3), 0.5), 4, key=jax.random.key(0), shape=CheckedByNumpy,
                 steps=2)  # fmt: skip


class NanAtCentre(UserCircles):
    def coverage(self, points, edge_width):  # no `+ 1e-20`: 0 / 0 on a centre
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1))
        return dp.soft_edge(distance - self.radii[:, None], edge_width) * distance / distance


@pytest.mark.parametrize("method", ["scan", "tiled"])
def test_nan_coverage_on_a_centre_is_named_on_the_first_render(method):
    # The probe's grid held no probe shape's centre: the first render passed, and
    # `paint` (which seeds shapes on pixel centres) diverged mid-fit.
    model = NanAtCentre.init(4, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"NanAtCentre\.coverage.* gives NaN at \(0\.5, 0\.5\)"):
        model.render_image((16, 16), method=method)


class Moved(UserCircles):
    pass


def test_load_finds_a_class_saved_from_a_script_by_its_name(tmp_path):
    # Saved from a script or notebook, the file names `__main__:Moved`; loading it
    # elsewhere with `classes=[Moved]` (imported from its module) raised a LoadError
    # telling the user to pass `classes=[Moved]`, which they had done.
    model = Moved.init(3, key=jax.random.key(0))
    try:
        Moved.__module__ = "__main__"
        dp.save(tmp_path / "m.eqx", model)
    finally:
        Moved.__module__ = __name__
    loaded = dp.load(tmp_path / "m.eqx", classes=[Moved])
    assert type(loaded) is Moved
    np.testing.assert_array_equal(loaded.raw_centres, model.raw_centres)
    with pytest.raises(dp.LoadError, match=r"`Moved` \(from module `__main__`\)"):
        dp.load(tmp_path / "m.eqx", classes=[UserCircles])


def test_load_names_every_class_it_lacks_with_those_passed(tmp_path):
    # The hint named only the first class missing, dropping the ones already passed:
    # following it failed on those.
    layers = dp.Layers(
        [UserCircles.init(3, key=jax.random.key(0)), Hollow.init(2, key=jax.random.key(1))]
    )
    path = dp.save(tmp_path / "l.eqx", layers)
    for passed in ([], [UserCircles], [Hollow]):
        with pytest.raises(dp.LoadError) as info:
            dp.load(path, classes=passed)
        names = [*(cls.__name__ for cls in passed), "UserCircles", "Hollow"]
        assert f"classes=[{', '.join(dict.fromkeys(names))}]" in str(info.value)
    loaded = dp.load(path, classes=[UserCircles, Hollow])
    assert [type(layer) for layer in loaded.layers] == [UserCircles, Hollow]


class Bumpy(UserCircles):
    """Circles with `lobes` bumps: a setting, not learned (a static field)."""

    lobes: int = eqx.field(static=True, kw_only=True)

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)
        angle = jnp.arctan2(offsets[..., 1], offsets[..., 0])
        reach = self.radii[:, None] * (1.0 + 0.2 * jnp.cos(self.lobes * angle))
        return dp.soft_edge(distance - reach, edge_width)

    def bounds(self):
        reach = 1.2 * self.radii[:, None]
        return jnp.concatenate([self.centres - reach, self.centres + reach], axis=-1)


class FiveLobes(Bumpy):
    lobes: int = eqx.field(static=True, default=5, kw_only=True)


class SevenLobes(FiveLobes):
    lobes: int = eqx.field(static=True, default=7, kw_only=True)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Bumpy.init(3, key=jax.random.key(0)),
        lambda: dp.paint(jnp.full((8, 8, 3), 0.5), 3, key=jax.random.key(0), shape=Bumpy),
    ],
    ids=["init", "paint"],
)
def test_a_static_setting_without_a_default_is_named(build):
    # Was "Bumpy.__init__() missing 1 required keyword-only argument: 'lobes'", from
    # inside `init`, which takes no such argument.
    with pytest.raises(TypeError, match=r"Bumpy's static field\(s\) `lobes` have no default"):
        build()
    assert FiveLobes.init(3, key=jax.random.key(0)).lobes == 5
    assert SevenLobes.init(3, key=jax.random.key(0)).lobes == 7


#: A role of the user's own: a fraction in (0, 1), stored as a logit.
FRACTION = dp.Role("geometry", "logit")


class Hollow(UserCircles):
    """Circles with a hole: `holes` is the inner radius over the outer, in (0, 1)."""

    raw_holes: Float[Array, " N"] = dp.parameter(FRACTION)

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        distance = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-20)
        inner = FRACTION.value(self.raw_holes)[:, None] * self.radii[:, None]
        return dp.soft_edge(jnp.maximum(distance - self.radii[:, None], inner - distance),
                            edge_width)  # fmt: skip

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": centres, "raw_radii": sizes, "raw_holes": 0.5 + 0 * sizes}


@pytest.mark.parametrize("hole", [1.5, -0.2])
def test_from_geometry_checks_a_logit_role_is_in_0_1(hole):
    # Was clipped into (0, 1) in silence: 1.5 stored as 1 - 1e-6.
    def build(value):
        return Hollow.from_geometry(
            {
                "raw_centres": ("centres", jnp.full((1, 2), 0.5), (2,)),
                "raw_radii": ("radii", jnp.array([0.2]), ()),
                "raw_holes": ("holes", jnp.array([value]), ()),
            },
            [[0.5] * 3],
            [1.0],
        )

    np.testing.assert_allclose(FRACTION.value(build(0.25).raw_holes), [0.25], rtol=1e-5)
    with pytest.raises(ValueError, match=r"`holes` must be finite and in \[0.0, 1.0\]"):
        build(hole)


class _BadGeometry(Hollow):
    """`random_geometry` values outside their roles' domains (set per test)."""

    radii_offset = 0.0
    hole = 0.5

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        holes = cls.hole + 0 * sizes
        return {"raw_centres": centres, "raw_radii": sizes + cls.radii_offset, "raw_holes": holes}


@pytest.mark.parametrize(
    "offset, hole, field",
    [
        (-1.0, 0.5, "raw_radii"),
        (0.0, 1.5, "raw_holes"),
        (0.0, float("nan"), "raw_holes"),
    ],  # fmt: skip
)
@pytest.mark.parametrize(
    "wrap", [lambda f: f(), lambda f: eqx.filter_jit(f)()], ids=["eager", "jit"]
)
def test_random_geometry_values_outside_their_roles_are_named(offset, hole, field, wrap):
    # Were clamped in silence: a size <= 0 stored as an invisible 1e-30, a hole of 1.5 as 1.
    cls = type("Bad", (_BadGeometry,), {"radii_offset": offset, "hole": hole})
    with pytest.raises((ValueError, eqx.EquinoxRuntimeError), match=f"`{field}` values"):
        jax.block_until_ready(wrap(lambda: cls.init(3, key=jax.random.key(0))))


class _StackedLayers(dp.Layers):
    """A subclass of `Layers`: still a container, not a shape type."""


@pytest.mark.parametrize(
    "make, shortfall",
    [
        (lambda: dp.Circles.init(2, key=jax.random.key(0)), "set"),
        (lambda: UserCircles.init(2, key=jax.random.key(0)), "set"),
        (lambda: "circles", "object"),
        (lambda: len, "object"),
        (lambda: dp.Layers, "layers"),
        (lambda: _StackedLayers, "layers"),
        (lambda: int, "class"),
        (lambda: dp.L2, "class"),
        (lambda: dp.Circles, None),
        (lambda: UserCircles, None),
    ],
    ids=[
        "set",
        "user-set",
        "str",
        "function",
        "layers",
        "layers-subclass",
        "int",
        "loss",
        "circles",
        "user-type",
    ],  # fmt: skip
)
def test_paint_and_the_command_line_refuse_the_same_non_shape_types(make, shortfall):
    """One test (`not_a_shape_type`) decides for `paint(shape=...)` and `--shape`, each
    wording its own message."""
    from diffprims._cli._common import UsageError
    from diffprims._cli._shape_spec import _check_class  # pyright: ignore[reportPrivateUsage]
    from diffprims._shapes import not_a_shape_type

    obj = make()
    assert not_a_shape_type(obj) == shortfall
    target = jnp.full((8, 8, 3), 0.5)
    if shortfall is None:
        _check_class(obj, "module:Name")
        return
    with pytest.raises(TypeError, match="`shape` must be a shape class"):
        dp.paint(target, 2, key=jax.random.key(0), shape=obj, steps=1)
    with pytest.raises(UsageError, match="--shape 'module:Name'"):
        _check_class(obj, "module:Name")


class _HalfBoxes(dp.Circles):
    """Circles whose boxes hold only half of each disc (a radius taken for a diameter)."""

    def bounds(self):
        half = 0.5 * self.radii[:, None]
        return jnp.concatenate([self.centres - half, self.centres + half], axis=1)


class _LooseHalfBoxes(_HalfBoxes):
    tight_bounds = False


@pytest.mark.parametrize("jit", [False, True])
def test_bounds_that_cut_shapes_off_are_named(jit):
    model = _HalfBoxes.init(12, key=jax.random.key(0))
    render = jax.jit(lambda m: m.render_image((40, 40))) if jit else None
    with pytest.raises(
        ValueError, match=r"_HalfBoxes\.bounds\(\) must hold each shape.*tight_bounds = False"
    ):
        render(model) if render else model.render_image((40, 40))
    # declared loose, "auto" takes the scan, and the picture is the circles' own
    loose = _LooseHalfBoxes.init(12, key=jax.random.key(0))
    circles = dp.Circles.init(12, key=jax.random.key(0))
    np.testing.assert_allclose(
        loose.render_image((40, 40)), circles.render_image((40, 40)), atol=1e-5
    )


class _EagerHalfBoxes(_HalfBoxes):
    """Half boxes of a type whose `random_geometry` needs values (NumPy), as allowed."""

    @classmethod
    def random_geometry(cls, centres, sizes, *, key):
        return {"raw_centres": np.asarray(centres), "raw_radii": np.asarray(sizes)}


@pytest.mark.parametrize("first", ["jit", "fit"])
def test_bounds_of_a_type_made_eagerly_are_checked_inside_a_trace_too(first):
    # Inside a trace its probe shapes were not made, the check was skipped, and the skip
    # cached: tiled renders then cut the shapes off in silence (0.44 from the scan).
    model = _EagerHalfBoxes.init(12, key=jax.random.key(0))
    target = jnp.full((40, 40, 3), 0.5)
    run = {
        "jit": lambda: jax.jit(lambda m: m.render_image((40, 40), method="tiled"))(model),
        "fit": lambda: dp.fit(model, target, steps=2, key=jax.random.key(1), batch=1.0),
    }[first]
    with pytest.raises(ValueError, match=r"_EagerHalfBoxes\.bounds\(\) must hold each shape"):
        run()


class _MarginlessCircles(dp.Circles):
    """Soft-edged circles that claim their boxes need no margin for the soft edge."""

    edge_margin = 0.0


def test_a_margin_too_small_for_soft_edges_is_named():
    model = _MarginlessCircles.init(12, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"grown by 0 edge widths \(`edge_margin`\)"):
        model.render_image((40, 40))


class _PaddedCircles(dp.Circles):
    """Soft-edged circles whose boxes are padded by a fixed 1/16 of the frame, and no
    margin in edge widths: enough for thin edges, not for an edge 1/32 of the frame wide
    (a 32-pixel grid, or `softness=8` on 256 pixels), where culling cut 0.06 off."""

    edge_margin = 0.0

    def bounds(self):
        half = self.radii[:, None] + 1 / 16
        return jnp.concatenate([self.centres - half, self.centres + half], axis=1)


class _FourSigmaBlobs(dp.Gaussians):
    """Isotropic blobs whose boxes end at 4 sigma, where they still cover 3.4e-4."""

    def bounds(self):
        half = 4 * jnp.max(self.scales, axis=1, keepdims=True)
        return jnp.concatenate([self.centres - half, self.centres + half], axis=1)


@pytest.mark.parametrize("cls", [_PaddedCircles, _FourSigmaBlobs], ids=["padded", "4-sigma"])
def test_boxes_that_hold_only_at_thin_edges_or_to_1e_3_are_named(cls):
    # Both passed the probe (at one edge width, a leak up to 1e-3) and their tiled
    # renders differed from the scan by up to 0.06 (6e-5) in silence.
    model = cls.init(12, key=jax.random.key(0))
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.bounds\(\) must hold each shape"):
        model.render_image((32, 32))


class _DistanceCircles(dp.Circles):
    """Circles whose coverage is the signed distance itself (`dp.soft_edge` forgotten)."""

    def coverage(self, points, edge_width):
        offsets = points[None, :, :] - self.centres[:, None, :]
        return (self.radii[:, None] - jnp.linalg.norm(offsets, axis=-1)) / edge_width


@pytest.mark.parametrize("n", [3, 12])  # the scan, the tiled renderer
def test_coverage_outside_0_1_is_named(n):
    # It rendered values of +-2e7 and `fit` ran on to a loss of 5e11, in silence.
    model = _DistanceCircles.init(n, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"_DistanceCircles\.coverage.*in \[0, 1\].*soft_edge"):
        jax.jit(lambda m: m.render_image((40, 40)))(model)


@pytest.mark.parametrize("margin", [-1.0, "14", None, float("nan")])
def test_an_edge_margin_that_is_no_width_is_named(margin):
    kind = type("_OddMargin", (dp.Circles,), {"edge_margin": margin})
    model = kind.init(12, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"_OddMargin\.edge_margin must be a number"):
        model.render_image((40, 40))


class Unboxed(UserCircles):
    tight_bounds = False

    def bounds(self):  # boxes that say nothing: the scan renders them
        return jnp.tile(jnp.array([-jnp.inf, -jnp.inf, jnp.inf, jnp.inf]), (self.num_shapes, 1))


def test_unbounded_boxes_render_with_the_scan():
    # The probe's points at the boxes' centres were (-inf + inf) / 2 = NaN: the first
    # render blamed `coverage` for a NaN at (nan, nan).
    image = Unboxed.init(5, key=jax.random.key(0)).render_image((16, 16))
    assert bool(jnp.isfinite(image).all())

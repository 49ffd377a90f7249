"""Bad input at every public boundary gives a clear ValueError/TypeError.

Each case is a distinct bad input. The error must be a `ValueError` or `TypeError`
raised by diffprims itself (the innermost frame is in the package, not in JAX or
equinox), whose message names the argument and says what it got. Where the input can
be traced, the same call is repeated under `jit`: shape/dtype problems still raise at
trace time, value problems (NaN, out of range) through `eqx.error_if`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import traceback
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffprims as dp

PACKAGE_DIR = os.path.dirname(os.path.abspath(dp.__file__))
KEY = jax.random.key(0)
TARGET = jnp.full((4, 4, 3), 0.5, jnp.float32)


def _public_classes(base: type) -> list[type]:
    found = {
        obj
        for name in dir(dp)
        if not name.startswith("_")
        and isinstance(obj := getattr(dp, name), type)
        and issubclass(obj, base)
        and not inspect.isabstract(obj)
    }
    return sorted(found, key=lambda cls: cls.__name__)


SHAPE_TYPES = _public_classes(dp.AbstractShapes)
LOSS_TYPES = [
    cls for cls in _public_classes(dp.AbstractLoss) if cls not in (dp.Weighted, dp.Scaled, dp.Sum)
]


def _simple_losses() -> list[dp.AbstractLoss]:
    out = []
    for cls in LOSS_TYPES:
        try:
            out.append(cls())
        except TypeError:  # needs arguments; covered by its own tests
            pass
    return out


def check_clean(error: BaseException, names: tuple[str, ...]) -> None:
    """The error is ours: right type, raised in diffprims, message names `names` + `got`."""
    assert isinstance(error, ValueError | TypeError), repr(error)
    message = str(error)
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    assert "got" in message.lower() or "expected" in message.lower(), message
    frames = traceback.extract_tb(error.__traceback__)
    innermost = os.path.abspath(frames[-1].filename)
    assert innermost.startswith(PACKAGE_DIR), (
        f"raised from {innermost}:{frames[-1].lineno}, not by diffprims: {message}"
    )
    # Not a JAX/equinox error re-raised with a new message.
    context = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if context is not None:
        module = type(context).__module__
        assert not module.startswith(("jax", "jaxlib", "equinox")), repr(context)


@dataclasses.dataclass
class Case:
    id: str
    fn: Callable[..., Any]
    args: tuple = ()
    names: tuple[str, ...] = ()
    jit: bool = False
    eager: bool = True
    expect: tuple[type[BaseException], ...] = (ValueError, TypeError)


def _model(cls: type = dp.Circles, n: int = 2) -> Any:
    return cls.init(n, key=KEY)


def _geometry(cls: type, model: Any) -> list[Any]:
    """Valid geometry arguments of `cls.from_values`, read from `model`'s properties."""
    names = list(inspect.signature(cls.from_values).parameters)
    return [getattr(model, name) for name in names[: names.index("colours")]]


def _shape_cases(cls: type) -> list[Case]:
    name = cls.__name__
    model = _model(cls)
    geometry = _geometry(cls, model)
    first = list(inspect.signature(cls.from_values).parameters)[0]
    points = jnp.full((5, 2), 0.5)

    def from_values(*geo, colours=model.colours, opacities=model.opacities, **kw):
        return cls.from_values(*geo, colours, opacities, **kw)

    def with_first(value):
        return (value, *geometry[1:])

    cases = [
        Case("init-n-zero", lambda: cls.init(0, key=KEY), names=("`n`",)),
        Case("init-n-float", lambda: cls.init(2.5, key=KEY), names=("`n`",)),
        Case("init-key-int", lambda: cls.init(2, key=0), names=("`key`",)),
        Case("init-key-none", lambda: cls.init(2, key=None), names=("`key`",)),
        Case(
            "init-key-bad-shape",
            lambda k: cls.init(2, key=k),
            (jnp.zeros(3, jnp.uint32),),
            ("`key`",),
            jit=True,
        ),
        Case(
            "init-target-uint8",
            lambda t: cls.init(2, key=KEY, target=t),
            (np.zeros((4, 4, 3), np.uint8),),
            ("`target`",),
            jit=True,
        ),
        Case(
            "init-target-2d",
            lambda t: cls.init(2, key=KEY, target=t),
            (jnp.zeros((4, 4)),),
            ("`target`",),
            jit=True,
        ),
        Case(
            "init-target-channels-first",
            lambda t: cls.init(2, key=KEY, target=t),
            (jnp.full((3, 8, 8), 0.5),),
            ("`target`", "channels-first", "jnp.moveaxis(target, 0, -1)"),
            jit=True,
        ),
        Case(
            "init-target-above-1",
            lambda t: cls.init(2, key=KEY, target=t),
            (jnp.full((4, 4, 3), 2.0),),
            ("`target`",),
            jit=True,
        ),
        Case(
            "init-target-nan",
            lambda t: cls.init(2, key=KEY, target=t),
            (jnp.full((4, 4, 3), jnp.nan),),
            ("`target`",),
            jit=True,
        ),
        Case(
            "init-target-empty",
            lambda t: cls.init(2, key=KEY, target=t),
            (jnp.zeros((0, 0, 3)),),
            ("`target`",),
            jit=True,
        ),
        Case(
            "init-softness-zero", lambda: cls.init(2, key=KEY, softness=0.0), names=("`softness`",)
        ),
        Case(
            "init-softness-nan",
            lambda: cls.init(2, key=KEY, softness=float("nan")),
            names=("`softness`",),
        ),
        Case(
            "init-size-range-reversed",
            lambda: cls.init(2, key=KEY, size_range=(0.2, 0.1)),
            names=("`size_range`",),
        ),
        Case(
            "init-size-range-str",
            lambda: cls.init(2, key=KEY, size_range="ab"),
            names=("`size_range`",),
        ),
        Case(
            "init-opacity-above-1", lambda: cls.init(2, key=KEY, opacity=1.5), names=("`opacity`",)
        ),
        Case("init-opacity-str", lambda: cls.init(2, key=KEY, opacity="x"), names=("`opacity`",)),
        Case(
            "init-channels-zero", lambda: cls.init(2, key=KEY, channels=0), names=("`channels`",)
        ),
        Case(
            "init-aspect-negative", lambda: cls.init(2, key=KEY, aspect=-1.0), names=("`aspect`",)
        ),
        Case(
            "init-compositing-unknown",
            lambda: cls.init(2, key=KEY, compositing="screen"),
            names=("`compositing`",),
        ),
        Case(
            "constructor-int-colours",
            lambda m: dataclasses.replace(m, raw_colours=jnp.zeros((2, 3), jnp.int32)),
            (model,),
            ("`raw_colours`",),
            jit=True,
        ),
        Case(
            "constructor-opacities-length",
            lambda m: dataclasses.replace(m, raw_opacities=jnp.zeros(3)),
            (model,),
            ("opacities",),
            jit=True,
        ),
        Case(
            "from-values-first-nan",
            lambda v: from_values(*with_first(v)),
            (jnp.full_like(geometry[0], jnp.nan),),
            (f"`{first}`",),
            jit=True,
        ),
        Case(
            "from-values-first-int",
            lambda v: from_values(*with_first(v)),
            (jnp.zeros(geometry[0].shape, jnp.int32),),
            (f"`{first}`",),
            jit=True,
        ),
        Case(
            "from-values-first-complex",
            lambda v: from_values(*with_first(v)),
            (np.zeros(geometry[0].shape, np.complex64),),
            (f"`{first}`",),
        ),
        Case(
            "from-values-first-bool",
            lambda v: from_values(*with_first(v)),
            (jnp.zeros(geometry[0].shape, bool),),
            (f"`{first}`",),
            jit=True,
        ),
        Case(
            "from-values-first-wrong-rank",
            lambda v: from_values(*with_first(v)),
            (jnp.zeros(geometry[0].shape[:-1] or (2, 2, 2)),),
            (f"`{first}`",),
            jit=True,
        ),
        Case(
            "from-values-colours-above-1",
            lambda c: from_values(*geometry, colours=c),
            (jnp.full((2, 3), 1.5),),
            ("`colours`",),
            jit=True,
        ),
        Case(
            "from-values-opacities-length",
            lambda o: from_values(*geometry, opacities=o),
            (jnp.full((3,), 0.5),),
            ("`opacities`",),
            jit=True,
        ),
        Case(
            "from-values-background-length",
            lambda b: from_values(*geometry, background=b),
            (jnp.full((2,), 0.5),),
            ("`background`",),
            jit=True,
        ),
        Case(
            "render-points-3-columns",
            lambda m, p: m.render(p, pixel_size=0.1),
            (model, jnp.zeros((5, 3))),
            ("`points`",),
            jit=True,
        ),
        Case(
            "render-points-int",
            lambda m, p: m.render(p, pixel_size=0.1),
            (model, jnp.zeros((5, 2), jnp.int32)),
            ("`points`",),
            jit=True,
        ),
        Case(
            "render-points-1d",
            lambda m, p: m.render(p, pixel_size=0.1),
            (model, jnp.zeros((5,))),
            ("`points`",),
            jit=True,
        ),
        Case(
            "render-pixel-size-zero",
            lambda m, s: m.render(points, pixel_size=s),
            (model, jnp.float32(0.0)),
            ("`pixel_size`",),
            jit=True,
        ),
        Case(
            "render-pixel-size-str",
            lambda m: m.render(points, pixel_size="a"),
            (model,),
            ("`pixel_size`",),
            jit=True,
        ),
        # NaN in, NaN out, silently: the render of a NaN parameter or point.
        Case(
            "render-points-nan",
            lambda m, p: m.render(p, pixel_size=0.1),
            (model, points.at[2, 0].set(jnp.nan)),
            ("`points`", "finite"),
            jit=True,
        ),
        Case(
            "render-model-nan",
            lambda m: m.render(points, pixel_size=0.1),
            (
                eqx.tree_at(
                    lambda m: m.raw_colours, model, model.raw_colours.at[0, 0].set(jnp.nan)
                ),
            ),
            ("finite parameters",),
            jit=True,
        ),
        Case(
            "render-image-model-inf",
            lambda m: m.render_image((4, 4)),
            (
                eqx.tree_at(
                    lambda m: m.raw_opacities, model, model.raw_opacities.at[1].set(jnp.inf)
                ),
            ),
            ("finite parameters",),
            jit=True,
        ),
        Case(
            "render-image-softness-nan",
            lambda m, s: m.render_image((4, 4), softness=s),
            (model, jnp.float32(jnp.nan)),
            ("`softness`",),
            jit=True,
        ),
        Case(
            "render-image-zero-height",
            lambda m: m.render_image((0, 4)),
            (model,),
            ("`shape",),
            jit=True,
        ),
        Case(
            "render-image-one-number",
            lambda m: m.render_image((4,)),
            (model,),
            ("`shape`",),
            jit=True,
        ),
        Case(
            "render-image-float-size",
            lambda m: m.render_image((2.5, 4)),
            (model,),
            ("`shape",),
            jit=True,
        ),
        Case(
            "take-out-of-range",
            lambda m, i: m.take(i),
            (model, jnp.array([0, 5])),
            ("`indices`",),
            jit=True,
        ),
        Case(
            "take-float-indices",
            lambda m, i: m.take(i),
            (model, jnp.array([0.0, 1.0])),
            ("`indices`",),
            jit=True,
        ),
    ]
    for case in cases:
        case.id = f"{name}-{case.id}"
    return cases


def _poison_loss(pred, target):
    raise RuntimeError("my loss is broken")


def _fit_cases() -> list[Case]:
    model = _model()

    def fit(**kwargs):
        kwargs.setdefault("steps", 2)
        return dp.fit(kwargs.pop("model", model), kwargs.pop("target", TARGET), **kwargs)

    def fit_target(t):
        return dp.fit(model, t, steps=1).losses

    nan_model = eqx.tree_at(lambda m: m.raw_centres, model, jnp.full((2, 2), jnp.nan))
    return [
        Case("fit-model-str", lambda: dp.fit("circles", TARGET), names=("`model`",)),
        Case("fit-model-class", lambda: dp.fit(dp.Circles, TARGET), names=("`model`",)),
        Case("fit-model-nan", lambda: fit(model=nan_model), names=("`model",)),
        Case("fit-target-channels", fit_target, (jnp.zeros((4, 4, 1)),), ("`target`",), jit=True),
        Case(
            "fit-target-channels-first",
            fit_target,
            (jnp.zeros((3, 8, 8)),),
            ("`target`", "channels-first", "jnp.moveaxis(target, 0, -1)"),
            jit=True,
        ),
        Case(
            "fit-target-above-1", fit_target, (jnp.full((4, 4, 3), 1.5),), ("`target`",), jit=True
        ),
        Case(
            "fit-target-below-0", fit_target, (jnp.full((4, 4, 3), -0.1),), ("`target`",), jit=True
        ),
        Case(
            "fit-target-inf", fit_target, (jnp.full((4, 4, 3), jnp.inf),), ("`target`",), jit=True
        ),
        Case(
            "fit-target-int",
            fit_target,
            (jnp.zeros((4, 4, 3), jnp.int32),),
            ("`target`",),
            jit=True,
        ),
        Case("fit-target-2d", fit_target, (jnp.zeros((4, 4)),), ("`target`",), jit=True),
        Case("fit-target-empty", fit_target, (jnp.zeros((0, 4, 3)),), ("`target`",), jit=True),
        Case("fit-target-list", lambda: fit(target=[[0.5]]), names=("`target`",)),
        Case("fit-steps-zero", lambda: fit(steps=0), names=("`steps`",)),
        Case("fit-steps-str", lambda: fit(steps="5"), names=("`steps`",)),
        Case("fit-steps-float", lambda: fit(steps=2.5), names=("`steps`",)),
        Case(
            "fit-steps-per-dispatch-zero",
            lambda: fit(steps_per_dispatch=0),
            names=("`steps_per_dispatch`",),
        ),
        Case("fit-batch-zero", lambda: fit(batch=0, key=KEY), names=("`batch`",)),
        Case("fit-batch-fraction-above-1", lambda: fit(batch=1.5, key=KEY), names=("`batch`",)),
        Case("fit-batch-too-many-pixels", lambda: fit(batch=999, key=KEY), names=("`batch`",)),
        Case("fit-batch-bool", lambda: fit(batch=True, key=KEY), names=("`batch`",)),
        Case("fit-batch-str", lambda: fit(batch="half", key=KEY), names=("`batch`",)),
        Case("fit-batch-without-key", lambda: fit(batch=4), names=("`key`", "`batch")),
        Case("fit-key-int", lambda: fit(key=3), names=("`key`",)),
        Case("fit-key-batch-of-keys", lambda: fit(key=jax.random.split(KEY)), names=("`key`",)),
        Case("fit-loss-non-scalar", lambda: fit(loss=lambda p, t: p - t), names=("`loss`",)),
        Case(
            "fit-loss-int-output", lambda: fit(loss=lambda p, t: jnp.sum(p > t)), names=("`loss`",)
        ),
        Case("fit-loss-class-not-instance", lambda: fit(loss=dp.L2), names=("`loss`",)),
        Case("fit-loss-str", lambda: fit(loss="l2"), names=("`loss`",)),
        Case(
            "fit-loss-raises",
            lambda: fit(loss=_poison_loss),
            names=("`loss`", "my loss is broken"),
        ),
        Case(
            "fit-loss-weights-wrong-size",
            lambda: fit(loss=dp.Weighted(dp.L2(), jnp.ones((3, 3)))),
            names=("`loss`", "weights"),
        ),
        Case("fit-optimizer-str", lambda: fit(optimizer="adam"), names=("`optimizer`",)),
        Case("fit-optimizer-factory", lambda: fit(optimizer=optax.adam), names=("`optimizer`",)),
        Case("fit-snapshots-zero", lambda: fit(snapshots=0), names=("`snapshots`",)),
        Case(
            "fit-checkpoint-every-zero",
            lambda: fit(checkpoint="unused.ckpt", checkpoint_every=0),
            names=("`checkpoint_every`",),
        ),
        Case(
            "fit-checkpoint-every-without-checkpoint",  # was ignored: nothing written
            lambda: fit(checkpoint_every=4),
            names=("`checkpoint_every`", "`checkpoint=None`"),
        ),
        Case("fit-checkpoint-not-path", lambda: fit(checkpoint=123), names=("`checkpoint`",)),
        Case("fit-resume-true-without-checkpoint", lambda: fit(resume=True), names=("`resume",)),
        Case(
            "fit-checkpoint-under-jit",
            lambda t: dp.fit(model, t, steps=1, checkpoint="unused.ckpt").losses,
            (TARGET,),
            ("`checkpoint`",),
            jit=True,
            eager=False,
        ),
    ]


def _loss_cases() -> list[Case]:
    a, b = jnp.zeros((4, 4, 3)), jnp.zeros((4, 4, 1))
    cases = []
    for loss in _simple_losses():
        name = type(loss).__name__
        cases += [
            Case(f"{name}-shape-mismatch", loss, (a, b), ("`pred`", "`target`"), jit=True),
            Case(f"{name}-int-pred", loss, (a.astype(jnp.int32), a), ("`pred`",), jit=True),
        ]

    def weighted(w):
        return dp.Weighted(dp.L2(), w)

    cases += [
        Case("weighted-negative", weighted, (-jnp.ones((4, 4)),), ("`weights`",), jit=True),
        Case("weighted-nan", weighted, (jnp.full((4, 4), jnp.nan),), ("`weights`",), jit=True),
        Case("weighted-1d", weighted, (jnp.ones(4),), ("`weights`",), jit=True),
        Case("weighted-int", weighted, (jnp.ones((4, 4), jnp.int32),), ("`weights`",), jit=True),
        Case(
            "weighted-of-sum",
            lambda: dp.Weighted(dp.L2() + dp.L1(), jnp.ones((4, 4))),
            names=("`Weighted`",),
        ),
        Case(
            "weighted-call-mismatch",
            lambda p: dp.Weighted(dp.L2(), jnp.ones((3, 3)))(p, p),
            (a,),
            ("`Weighted`",),
            jit=True,
        ),
        Case(
            "scaled-vector-weight",
            lambda w: w * dp.L2(),
            (jnp.ones(3),),
            ("loss weight",),
            jit=True,
        ),
        Case("scaled-nan-weight", lambda: float("nan") * dp.L2(), names=("loss weight",)),
        Case("scaled-str-weight", lambda: dp.L2() * "a", names=("loss weight",)),
        Case("loss-times-loss", lambda: dp.L2() * dp.L1(), names=("loss",)),
        Case("loss-plus-number", lambda: dp.L2() + 3, names=("`+`",)),
        Case("loss-minus-str", lambda: dp.L2() - "a", names=("`-`",)),
        Case("loss-divided-by-zero", lambda: dp.L2() / 0, names=("loss divisor",)),
    ]
    return cases


def _junk(path: str) -> str:
    """A file of junk at `path` (relative: tests run in a temporary folder)."""
    with open(path, "wb") as file:
        file.write(b"definitely not what you think\n")
    return path


def _io_cases() -> list[Case]:
    out = "out.png"
    demo = dp.demo_image_path()
    model = _model()
    return [
        Case(
            "load-image-not-an-image",
            lambda: dp.load_image(_junk("not-an-image.png")),
            names=("not-an-image",),
        ),
        Case("load-image-size-zero", lambda: dp.load_image(demo, size=0), names=("`size`",)),
        Case(
            "load-image-size-pair-zero",
            lambda: dp.load_image(demo, size=(0, 3)),
            names=("`size`",),
        ),
        Case("load-image-size-str", lambda: dp.load_image(demo, size="big"), names=("`size`",)),
        Case(
            "save-image-nan",
            lambda: dp.save_image(out, jnp.full((2, 2, 3), jnp.nan)),
            names=("`image`",),
        ),
        Case(
            "save-image-2-channels",
            lambda: dp.save_image(out, jnp.zeros((2, 2, 2))),
            names=("`image`",),
        ),
        Case(
            "save-image-uint8",
            lambda: dp.save_image(out, np.zeros((2, 2, 3), np.uint8)),
            names=("`image`",),
        ),
        Case(
            "save-image-empty",
            lambda: dp.save_image(out, np.zeros((0, 0, 3), np.float32)),
            names=("`image`",),
        ),
        Case(
            "save-image-unknown-suffix",
            lambda: dp.save_image("x.unknown", jnp.zeros((2, 2, 3))),
            names=("x.unknown",),
        ),
        Case(
            "save-image-traced",
            lambda x: dp.save_image(out, x),
            (jnp.zeros((2, 2, 3)),),
            ("`save_image`",),
            jit=True,
            eager=False,
        ),
        Case(
            "psnr-shape-mismatch",
            dp.psnr,
            (jnp.zeros((2, 2, 3)), jnp.zeros((2, 2, 1))),
            ("`image`", "`target`"),
            jit=True,
        ),
        Case("pixel-centres-zero", lambda: dp.pixel_centres((0, 2)), names=("`shape",)),
        Case("pixel-centres-str", lambda: dp.pixel_centres("ab"), names=("`shape",)),
        Case("save-model-not-a-model", lambda: dp.save("m.eqx", "x"), names=("`save`",)),
        Case("load-model-garbage", lambda: dp.load(_junk("garbage.eqx")), names=("garbage.eqx",)),
        Case("to-svg-not-shapes", lambda: dp.to_svg("x", (4, 4)), names=("`to_svg`",)),
        Case("to-svg-bad-size", lambda: dp.to_svg(model, (0, 4)), names=("`shape",)),
        Case(
            "save-gif-no-snapshots",
            lambda: dp.save_gif("a.gif", [], (4, 4)),
            names=("`snapshots`",),
        ),
    ]


def _filter_cases() -> list[Case]:
    if not hasattr(dp, "SeparableFilters"):
        return []
    filters = dp.SeparableFilters
    disk = dp.kernels.disk(7)
    bank = filters.from_svd(disk, 1)
    v = jnp.zeros((2, 5))
    return [
        Case("filters-int", filters, (v.astype(jnp.int32), v), ("`vertical`",), jit=True),
        Case("filters-rank-mismatch", filters, (v, jnp.zeros((3, 5))), ("`vertical`",), jit=True),
        Case("filters-1d", filters, (jnp.zeros(5), jnp.zeros(5)), ("`vertical`",), jit=True),
        Case(
            "filters-empty",
            filters,
            (jnp.zeros((0, 5)), jnp.zeros((0, 5))),
            ("`vertical`",),
            jit=True,
        ),
        Case("filters-nan", filters, (jnp.full((2, 5), jnp.nan), v), ("`vertical`",), jit=True),
        Case(
            "from-svd-rank-zero", lambda k: filters.from_svd(k, 0), (disk,), ("`rank`",), jit=True
        ),
        Case(
            "from-svd-rank-too-big",
            lambda k: filters.from_svd(k, 99),
            (disk,),
            ("`rank`",),
            jit=True,
        ),
        Case(
            "from-svd-kernel-1d",
            lambda k: filters.from_svd(k, 1),
            (jnp.zeros(5),),
            ("`kernel`",),
            jit=True,
        ),
        Case(
            "from-svd-kernel-nan",
            lambda k: filters.from_svd(k, 1),
            (disk * jnp.nan,),
            ("`kernel`",),
        ),
        Case(
            "from-svd-kernel-complex",
            lambda k: filters.from_svd(k, 1),
            (jnp.ones((5, 5), jnp.complex64),),
            ("`kernel`",),
            jit=True,
        ),
        Case(
            "apply-image-2d", lambda x: bank.apply(x), (jnp.zeros((8, 8)),), ("`image`",), jit=True
        ),
        Case(
            "apply-image-int",
            lambda x: bank.apply(x),
            (jnp.zeros((8, 8, 3), jnp.int32),),
            ("`image`",),
            jit=True,
        ),
        Case(
            "apply-border-unknown",
            lambda: bank.apply(jnp.zeros((8, 8, 3)), border="nope"),
            names=("`border`",),
        ),
        Case("kernel-disk-size-zero", lambda: dp.kernels.disk(0), names=("`size`",)),
        Case("kernel-disk-size-str", lambda: dp.kernels.disk("a"), names=("`size`",)),
        Case(
            "kernel-disk-radius-negative",
            lambda: dp.kernels.disk(5, radius=-1.0),
            names=("`radius`",),
        ),
        Case("kernel-polygon-two-sides", lambda: dp.kernels.polygon(7, 2), names=("`sides`",)),
        Case(
            "kernel-gaussian-sigma-negative",
            lambda: dp.kernels.gaussian(7, sigma=-1.0),
            names=("`sigma`",),
        ),
        Case("kernel-box-size-one-number", lambda: dp.kernels.box((3,)), names=("`size`",)),
    ]


def _paint_and_image_loss_cases() -> list[Case]:
    cases = []
    if hasattr(dp, "paint"):

        def paint(**kwargs):
            kwargs.setdefault("key", KEY)
            kwargs.setdefault("steps", 2)
            return dp.paint(kwargs.pop("target", TARGET), kwargs.pop("n", 2), **kwargs)

        cases += [
            Case(
                "paint-target-uint8",
                lambda: paint(target=np.zeros((4, 4, 3), np.uint8)),
                names=("`target`",),
            ),
            Case(
                "paint-target-channels-first",
                lambda: paint(target=jnp.full((3, 8, 8), 0.5)),
                names=("`target`", "channels-first", "jnp.moveaxis(target, 0, -1)"),
            ),
            Case("paint-n-zero", lambda: paint(n=0), names=("`n`",)),
            Case("paint-key-int", lambda: paint(key=1), names=("`key`",)),
            Case("paint-shape-str", lambda: paint(shape="circles"), names=("`shape`",)),
            Case(
                "paint-shape-instance",
                lambda: paint(shape=_model()),
                names=("`shape`", "dp.AbstractShapes", "shape=Circles"),
            ),
            Case(
                "paint-shape-layers",
                lambda: paint(shape=dp.Layers),
                names=("`shape`", "subclass of `dp.AbstractShapes`", "Layers", "container"),
            ),
            Case(
                "paint-shape-abstract",
                lambda: paint(shape=dp.AbstractShapes),
                names=("AbstractShapes", "`coverage`", "`bounds`"),
            ),
            Case("paint-steps-zero", lambda: paint(steps=0), names=("`steps`",)),
            Case(
                "paint-seconds-negative",
                lambda: paint(steps=None, seconds=-1.0),
                names=("`seconds`",),
            ),
            Case("paint-rounds-zero", lambda: paint(rounds=0), names=("`rounds`",)),
            Case("paint-restarts-zero", lambda: paint(restarts=0), names=("`restarts`",)),
            Case(
                "paint-threads-string",
                lambda: paint(restarts=2, threads="no"),
                names=("`threads`",),
                expect=(TypeError,),
            ),
            Case("paint-method-unknown", lambda: paint(method="fastest"), names=("`method`",)),
        ]
    cases.append(
        Case(
            "render-method-unknown",
            lambda m: m.render(jnp.zeros((4, 2)), pixel_size=0.1, method="fastest"),
            (_model(),),
            ("`method`",),
            jit=True,
        )
    )
    if hasattr(dp, "SSIM"):
        cases += [
            Case(
                "ssim-filter-size-zero", lambda: dp.SSIM(filter_size=0), names=("`filter_size`",)
            ),
            Case(
                "ssim-max-value-negative", lambda: dp.SSIM(max_value=-1.0), names=("`max_value`",)
            ),
            Case(
                "ssim-image-smaller-than-window",
                dp.SSIM(),
                (TARGET, TARGET),
                ("`SSIM`",),
                jit=True,
            ),
        ]
    if hasattr(dp, "edge_weights"):
        cases += [
            Case(
                "edge-weights-uint8",
                dp.edge_weights,
                (np.zeros((4, 4, 3), np.uint8),),
                ("`target`",),
            ),
            Case(
                "edge-weights-channels-first",
                dp.edge_weights,
                (jnp.full((1, 6, 6), 0.5),),
                ("`target`", "channels-first", "moveaxis"),
                jit=True,
            ),
            Case(
                "save-image-channels-first",
                lambda: dp.save_image("x.png", np.full((3, 8, 8), 0.5, np.float32)),
                names=("`image`", "channels-first", "moveaxis"),
            ),
            Case(
                "edge-weights-negative",
                lambda: dp.edge_weights(TARGET, strength=-1.0),
                names=("`strength`",),
            ),
        ]
    return cases


def _all_cases() -> list[Case]:
    cases = [case for cls in SHAPE_TYPES for case in _shape_cases(cls)]
    cases += _fit_cases() + _loss_cases() + _io_cases() + _filter_cases()
    return cases + _paint_and_image_loss_cases()


CASES = _all_cases()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cases that could write files write them here


def test_enough_distinct_cases():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    # Distinct bad inputs, counting each case run for every shape type once.
    shape_names = {cls.__name__ for cls in SHAPE_TYPES}
    distinct = {
        case.id.split("-", 1)[1] if case.id.split("-")[0] in shape_names else case.id
        for case in CASES
    }
    assert len(distinct) >= 40, len(distinct)


EAGER_CASES = [case for case in CASES if case.eager]


@pytest.mark.parametrize("case", EAGER_CASES, ids=[case.id for case in EAGER_CASES])
def test_eager(case: Case):
    with pytest.raises(case.expect) as info:
        case.fn(*case.args)
    check_clean(info.value, case.names)


JIT_CASES = [case for case in CASES if case.jit]


@pytest.mark.parametrize("case", JIT_CASES, ids=[case.id for case in JIT_CASES])
def test_under_jit(case: Case):
    with pytest.raises((*case.expect, eqx.EquinoxRuntimeError)) as info:
        jax.block_until_ready(eqx.filter_jit(case.fn)(*case.args))
    error = info.value
    for name in case.names:
        assert name in str(error), f"{name!r} not named in: {error}"
    if not isinstance(error, eqx.EquinoxRuntimeError):
        # Shape/dtype problems are found while tracing, by diffprims itself.
        check_clean(error, case.names)


def test_missing_files_raise_file_not_found(tmp_path):
    missing = tmp_path / "nothing-here.png"
    for load in (dp.load_image, dp.load):
        with pytest.raises(FileNotFoundError) as info:
            load(missing)
        assert "nothing-here.png" in str(info.value)
        assert os.path.abspath(
            traceback.extract_tb(info.value.__traceback__)[-1].filename
        ).startswith(PACKAGE_DIR)


# -- checkpoints: corrupt or mismatched files never start a fit silently wrong ----------


@pytest.fixture(scope="module")
def _checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "fit.ckpt"
    dp.fit(_model(), TARGET, steps=4, steps_per_dispatch=2, checkpoint=path, batch=8, key=KEY)
    return path.read_bytes()


@pytest.fixture
def checkpoint(tmp_path, _checkpoint_bytes):
    """A fresh copy of a checkpoint after 4 of the steps of `_resume`'s fit."""
    path = tmp_path / "fit.ckpt"
    path.write_bytes(_checkpoint_bytes)
    return _model(), path


def _resume(model, path, **kwargs):
    args = dict(steps=8, steps_per_dispatch=2, batch=8, key=KEY, resume=path)
    args.update(kwargs)
    return dp.fit(model, args.pop("target", TARGET), **args)


def test_checkpoint_fixture_resumes(checkpoint):
    # The damaged/mismatched files below fail only because of the damage.
    model, path = checkpoint
    assert _resume(model, path).losses.shape == (8,)


@pytest.mark.parametrize(
    "damage, names",
    [
        (lambda data: data[:-10], ("truncated",)),
        (lambda data: data[:-20] + bytes(20), ("corrupt",)),
        (lambda data: b"not json\n" + data, ("not a diffprims checkpoint",)),
        (lambda data: data.replace(b'"version": 2', b'"version": 99'), ("version",)),
    ],
    ids=["truncated", "flipped-bytes", "not-a-checkpoint", "future-version"],
)
def test_corrupt_checkpoint(checkpoint, damage, names):
    model, path = checkpoint
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(dp.CheckpointError) as info:
        _resume(model, path)
    check_clean(info.value, ("`resume`", *names))


@pytest.mark.parametrize(
    "change, names",
    [
        (dict(model=_model(n=3)), ("model",)),
        (dict(model=_model(dp.Ellipses) if hasattr(dp, "Ellipses") else _model(n=3)), ("model",)),
        (dict(target=jnp.full((4, 4, 3), 0.25)), ("target_sha256",)),
        (dict(target=jnp.full((4, 5, 3), 0.5)), ("target_shape",)),
        (dict(key=jax.random.key(1)), ("`key`",)),
        (dict(batch=4), ("batch",)),
        (dict(steps=2), ("`steps`",)),
        (dict(optimizer=optax.sgd(0.1)), ("optimizer",)),
    ],
    ids=[
        "model-size",
        "model-type",
        "target-values",
        "target-shape",
        "key",
        "batch",
        "steps",
        "optimizer",
    ],
)
def test_mismatched_checkpoint(checkpoint, change, names):
    model, path = checkpoint
    kwargs = dict(change)
    with pytest.raises(dp.CheckpointError) as info:
        _resume(kwargs.pop("model", model), path, **kwargs)
    check_clean(info.value, ("`resume`", *names))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such.ckpt"):
        _resume(_model(), tmp_path / "no-such.ckpt")


# -- the command line: exit status 2, one line naming the option -------------------------


@pytest.mark.parametrize(
    "argv, option",
    [
        (["paint", "--size", "0"], "--size"),
        (["paint", "--lr", "-1"], "--lr"),
        (["paint", "--softness", "0"], "--softness"),
        (["paint", "--frames", "0"], "--frames"),
        (["paint", "--render-size", "0"], "--render-size"),
        (["paint", "--seed", "x"], "--seed"),
        (["paint", "-n", "many"], "-n"),
        (["filter", "--steps", "0"], "--steps"),
        (["filter", "--rank", "0"], "--rank"),
        (["filter", "--weights", "-1,1,1"], "--weights"),
        (["filter", "--kernel", "disk:0"], "disk:0"),
    ],
)
def test_cli_bad_arguments(argv, option, capsys):
    from diffprims._cli import main

    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and option in err and "Traceback" not in err


@pytest.mark.parametrize("batch", [None, 0.5])
def test_weight_map_of_another_size_is_refused(batch):
    # Sampled at a minibatch's pixels, a smaller map was read out of range silently.
    target = jnp.full((16, 16, 3), 0.5)
    loss = dp.Weighted(dp.L2(), np.ones((12, 12)))
    model = dp.Circles.init(3, key=jax.random.key(0), target=target)
    with pytest.raises(ValueError, match=r"target's size \(16, 16\).*\(12, 12, 1\)"):
        dp.fit(model, target, loss=loss, steps=2, batch=batch, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"target's size \(16, 16\)"):
        dp.paint(target, 4, key=jax.random.key(0), steps=2, loss=loss)


def test_values_just_outside_the_range_are_shown_exactly():
    target = jnp.full((8, 8, 3), 0.5).at[0, 0, 0].set(np.nextafter(np.float32(1), 2))
    with pytest.raises(ValueError, match=r"1\.0000001.*\(1 outside\).*jnp\.clip\(target"):
        dp.Circles.init(3, key=jax.random.key(0), target=target)


@pytest.mark.parametrize("call", ["render_image", "fit", "to_svg"])
def test_a_model_edited_into_inconsistent_shapes_is_refused_by_its_own_check(call):
    # `eqx.tree_at` skips `__check_init__`: six radii for five circles failed deep in
    # JAX's scan ("scan got values with different leading axis sizes: 5, 5, 5, 6").
    model = dp.Circles.init(5, key=jax.random.key(0))
    bad = eqx.tree_at(lambda m: m.raw_radii, model, jnp.zeros(6))
    run = {
        "render_image": lambda: bad.render_image((8, 8)),
        "fit": lambda: dp.fit(bad, jnp.zeros((8, 8, 3)), steps=2),
        "to_svg": lambda: dp.to_svg(bad, (8, 8)),
    }[call]
    with pytest.raises(ValueError, match=r"own checks refuse: .*`raw_radii` must have leading"):
        run()


@pytest.mark.parametrize(
    "keys",
    [jax.random.split(jax.random.key(1), 3), jax.random.split(jax.random.PRNGKey(1), 3)],
)
def test_a_batch_of_keys_is_told_to_vmap(keys):
    # "`key` must be a PRNG key ...; got key<fry> array of shape (3,)" said what, not how.
    with pytest.raises(TypeError, match=r"batch of keys.*jax\.vmap"):
        dp.Circles.init(2, key=keys)
    for not_keys in (jnp.zeros(3), jnp.zeros((4, 2))):  # a float (P, 2) is no key batch
        with pytest.raises(TypeError, match="must be a PRNG key") as single:
            dp.Circles.init(2, key=not_keys)
        assert "batch of keys" not in str(single.value)


def test_a_grid_of_points_is_told_how_to_flatten_it():
    # The hint pointed at `pixel_centres`, whose (H, W, 2) grid was the mistake.
    with pytest.raises(ValueError, match=r"pixel_centres\(\(H, W\)\)\.reshape\(-1, 2\)"):
        _model().render(dp.pixel_centres((4, 4)), pixel_size=0.25)


def test_a_layer_with_nan_parameters_is_refused_eagerly_and_under_jit():
    # Rendered NaN silently, as a shape set did; the message names the layer's field.
    layers = dp.Layers([_model(dp.Circles), _model(dp.Gaussians)])
    bad = eqx.tree_at(
        lambda m: m.layers[1].raw_colours,
        layers,
        layers.layers[1].raw_colours.at[0, 0].set(jnp.nan),
    )
    with pytest.raises(ValueError, match=r"finite parameters.*`model\.layers\[1\]\.raw_colours`"):
        bad.render_image((4, 4))
    with pytest.raises(eqx.EquinoxRuntimeError, match="finite parameters"):
        jax.block_until_ready(
            eqx.filter_jit(lambda m: m.render(jnp.full((3, 2), 0.5), pixel_size=0.25))(bad)
        )


def test_a_gif_of_a_nan_snapshot_is_refused_by_name(tmp_path):
    model = _model(dp.Circles)
    bad = eqx.tree_at(lambda m: m.raw_radii, model, model.raw_radii.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"`snapshots\[1\]` must have finite.*`model\.raw_radii`"):
        dp.save_gif(tmp_path / "a.gif", [model, bad], (8, 8))
    assert not (tmp_path / "a.gif").exists()


def test_learn_background_must_be_a_bool():
    # "no" counted as True: `bool(...)` ran before any check.
    model = _model(dp.Circles)
    for make in (
        lambda: dp.Circles.init(2, key=KEY, learn_background="no"),
        lambda: dp.Circles.from_values(
            [[0.5, 0.5]], [0.1], [[1.0] * 3], [1.0], learn_background="no"
        ),
        lambda: model.with_compositing("depth", learn_background="no"),
    ):
        with pytest.raises(TypeError, match="`learn_background` must be True or False"):
            make()

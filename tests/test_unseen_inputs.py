"""`paint` and `fit` on inputs the tuning photos never had: odd sizes, few shapes, one round."""

import jax
import jax.numpy as jnp
import numpy as np

import diffprims as dp


def _noise(key, shape=(16, 16, 3)):
    """Uniform noise: blurring it changes it by almost all of its variance (1/12)."""
    return jax.random.uniform(key, shape)


def test_a_single_round_fits_the_sharp_target(getkey):
    """One round is the first and the last: it fits the target itself, not the blurred
    first-round target (n=1 paints a single round; so does rounds=1 without spares)."""
    target = _noise(getkey())
    for n, knobs in ((1, {}), (4, {"rounds": 1, "extra": 0.0})):
        result = dp.paint(target, n, key=getkey(), steps=10, solve_colours=False, **knobs)
        error = float(jnp.mean((result.model.render_image((16, 16)) - target) ** 2))
        # Against the 3-pixel blur of noise the loss was ~0.002, a tenth of this error.
        assert float(np.mean(result.losses[-3:])) > 0.5 * error


def test_the_colour_solve_of_a_large_image_takes_one_pixel_per_block(getkey, monkeypatch):
    """Up to 512 x 512 the solve uses every pixel; beyond, one pixel of every block (at
    1536 x 1024 with 200 circles: 12 s -> 1.6 s warm, the same PSNR to 1e-4 dB), and
    the colours it finds are those that made the picture."""
    from diffprims._paint import _solve

    assert _solve.solve_stride(512 * 512) == 1 and _solve.solve_stride(1536 * 1024) == 3
    model = dp.Circles.init(4, key=getkey(), size_range=(0.2, 0.4), opacity=0.9)
    colours = jax.random.uniform(getkey(), (4, 3), minval=0.2, maxval=0.8)
    truth = dp.Circles.from_values(
        model.centres, model.radii, colours, model.opacities, background=model.background
    )
    target = truth.render_image((30, 45))
    solved, error = _solve.solve_colours(model, target, stride=3, ridge=0.0)
    np.testing.assert_allclose(solved.colours, colours, atol=2e-3)
    assert _solve.solve_colours(model, target, stride=3, error=False)[1] is None
    # paint takes that path for images over MAX_SOLVE_PIXELS.
    monkeypatch.setattr(_solve, "MAX_SOLVE_PIXELS", 100)
    result = dp.paint(target, 4, key=getkey(), steps=10)
    assert np.isfinite(float(dp.psnr(result.model.render_image((30, 45)), target)))


def test_a_timed_round_ends_with_the_steps_its_share_still_holds(monkeypatch):
    # A round ran whole dispatches while half of one fitted: 50 steps of 1000 triangles
    # (3 s) overran a 5 s budget by 4 s. Now the last dispatch runs what the time holds.
    from diffprims._paint import _schedule

    now = [0.0]
    monkeypatch.setattr(_schedule.time, "perf_counter", lambda: now[0])
    plan = _schedule.plan_rounds(20, 1, coarse=3.0, grow=0.6, aspect=1.0)
    budget = _schedule.Budget(plan, 20, steps=None, seconds=10.0, reserve=0.0, start=0.0)
    budget.dispatch_size(50, 64 * 64)
    budget.begin(0)
    lengths = []
    while (length := budget.next_length(50)) > 0:
        lengths.append(length)
        budget.took(length)
        now[0] += 3.0 if len(lengths) == 1 else 0.03 * length  # compiling, then 30 ms a step
    assert lengths[:2] == [50, 50] and lengths[-1] < 50
    assert abs(now[0] - 10.0) <= 0.01  # within half a step of the round's share


def test_the_grids_that_place_shapes_follow_the_pixel_count():
    # From the shorter side, 120 x 360 (fewer pixels than 256^2) scored every pixel.
    from diffprims._paint._placement import grid_step

    assert [grid_step(256, 256, 64), grid_step(256, 256, 128)] == [4, 2]
    assert [grid_step(120, 360, 64), grid_step(120, 360, 128)] == [3, 2]
    assert [grid_step(127, 127, 64), grid_step(128, 128, 64)] == [2, 2]
    assert grid_step(2, 5000, 64) == 2 and grid_step(1, 1, 128) == 1


def test_a_timed_dispatch_on_a_large_image_is_short():
    """With `seconds`, a dispatch renders about as many pixel samples as 50 steps at
    256 x 256: at 1536 x 1024 (98304 samples a step) 2 steps, not 50 (9 s, all of a
    round's share of `seconds=10`: the paint took 41 s). `steps` runs keep their size."""
    from diffprims._paint._schedule import Budget, plan_rounds

    plan = plan_rounds(20, 4, coarse=3.0, grow=0.6, aspect=1.5)
    timed = Budget(plan, 20, steps=None, seconds=10.0, reserve=0.0, start=0.0)
    assert timed.dispatch_size(50, 64 * 64) == 50
    assert timed.dispatch_size(50, 256 * 384) == 2
    assert timed.dispatch_size(50, 2000 * 2000) == 1
    # and of many shapes: 50 steps of 1000 triangles took 3 s of a 5 s budget
    assert timed.dispatch_size(50, 64 * 64, shapes=260) == 50
    assert timed.dispatch_size(50, 64 * 64, shapes=1300) == 10
    assert timed.dispatch_size(50, 32 * 32, shapes=1300) == 40
    counted = Budget(plan, 20, steps=1000, seconds=None, reserve=0.0, start=0.0)
    assert counted.dispatch_size(50, 256 * 384) == 50


def test_cycles_are_skipped_once_the_budget_is_spent(getkey):
    """A budget spent before the cycles start (any budget is, at 1 ms) skips them: they
    would add and remove spare shapes with no time to fit them (4 of 13 rounds here)."""
    target = _noise(getkey())
    result = dp.paint(target, 10, key=getkey(), seconds=1e-3, rounds=4, cycles=2)
    assert len(result.snapshots) == 4 + 1  # the rounds and the removal, no cycles
    assert result.model.num_shapes == 10
    counted = dp.paint(target, 10, key=getkey(), steps=20, rounds=4, cycles=2)
    assert len(counted.snapshots) == 4 + 1 + 2 * 2


def test_a_budget_too_short_for_the_full_colour_solve_solves_on_fewer_pixels():
    """At 256 x 256 with 100 circles (130 painted), `seconds=0.2` took 1.25 s warm, 0.55 s
    of it the solve on every pixel; 1000 circles with `seconds=10` 13.9 s under load, 4.1
    s of it the solve: `SOLVE_SHARE` of the budget is the most the solve may take by its
    estimate, and what is kept for it. The full budgets `benchmarks/quality.py` measures
    keep every pixel (every other pixel of each side costs at most 0.01 dB, at fixed
    steps on three photos)."""
    from diffprims._paint._solve import SOLVE_SHARE, solve_reserve, solve_stride

    assert solve_stride(256 * 256, 130, 0.2) == 4  # its held-out check's pass counted
    # ... only on a coarser grid: where every pixel fits, every pixel (it took stride 2)
    assert solve_stride(256 * 256, 200, 3.0) == solve_stride(512 * 512, 200, 10.0) == 1
    assert solve_stride(256 * 256, 1000, 10.0) == solve_stride(256 * 256, 260, 2.3) == 2
    # 16384 pixels for 1301 colours: too few a shape, no solve (MIN_PIXELS_PER_COLOUR).
    assert solve_stride(256 * 256, 1300, 10.0) is None
    assert solve_stride(256 * 256, 260, 20.0) == solve_stride(256 * 256, 260) == 1
    assert solve_stride(64 * 64, 26, 0.2) == 1
    assert 1.0 < solve_reserve(10.0, 1000, 256 * 256) <= SOLVE_SHARE * 10.0  # a tenth before


def test_a_colour_solve_on_a_coarse_grid_never_worsens_the_picture(getkey):
    """On one pixel of every block the solve can fit those pixels and not the others (5000
    circles at 512^2 with `seconds=30` solved on 7500 pixels: 23.8 -> 19.8 dB); it keeps
    its colours only if they are no worse on another pixel of each block, and `paint`
    does not solve on fewer than MIN_PIXELS_PER_COLOUR pixels a shape."""
    from diffprims._paint import _solve

    target = dp.load_image(dp.demo_image_path(), size=48)
    model = dp.Circles.init(200, key=getkey(), target=target, size_range=(0.02, 0.08))
    model = dp.fit(model, target, steps=150, key=getkey()).model
    before = float(dp.psnr(model.render_image((48, 48)), target))
    for stride in (4, 8):  # 144 and 36 pixels for 201 colours
        solved, _ = _solve.solve_colours(model, target, stride=stride)
        assert float(dp.psnr(solved.render_image((48, 48)), target)) >= before - 1e-4
    assert _solve.solve_stride(512 * 512, 5000, 30.0) is None
    assert _solve.solve_seconds(5000, 512 * 512, 1, 30.0) == 0.0
    assert _solve.solve_reserve(30.0, 5000, 512 * 512) == 0.0
    assert _solve.solve_stride(512 * 512, 5000) is None  # steps: UNBUDGETED_SOLVE_SECONDS
    assert _solve.solve_stride(512 * 512, 200) == 1
    # Batched restarts solve each painting's spare shapes too: the reserve counts what the
    # solve will solve (it kept 0.75 s of 5 for 800 shapes, and 1040 then solved none).
    assert _solve.solve_stride(256 * 256, 600, 5.0) == 2
    assert _solve.solve_stride(256 * 256, 600, 5.0, 2) is None
    assert _solve.solve_reserve(5.0, 600, 256 * 256, 2) == 0.0


def test_big_endian_arrays_are_read_as_their_values(getkey):
    # A FITS image (astropy) or a .npy written on another machine is big-endian, which
    # JAX refuses: every entry point failed with "Dtype >f8 is not a valid JAX array type".
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(12, 12, 3)).astype(np.float32)
    kernel = np.outer(np.hanning(7), np.hanning(7)).astype(np.float32)
    swapped = {name: a.astype(a.dtype.newbyteorder(">")) for name, a in
               (("image", image), ("kernel", kernel))}  # fmt: skip
    bank = dp.SeparableFilters.from_svd(kernel, 2)
    for native, other in (
        (bank.kernel(), dp.SeparableFilters.from_svd(swapped["kernel"], 2).kernel()),
        (bank.apply(image), bank.apply(swapped["image"])),
        (dp.psnr(image, 0.5 * image), dp.psnr(swapped["image"], 0.5 * image)),
        (dp.edge_weights(image), dp.edge_weights(swapped["image"])),
    ):
        np.testing.assert_array_equal(native, other)
    model = dp.Circles.init(3, key=getkey(), target=swapped["image"])
    result = dp.fit(model, swapped["image"], steps=2)
    assert np.isfinite(result.losses).all()

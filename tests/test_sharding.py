"""Batched fits: `jax.vmap(fit)` over targets and keys, and the same batch sharded over
8 (forced CPU) devices, agree with one fit at a time.

The sharded part needs `XLA_FLAGS=--xla_force_host_platform_device_count=8` set before
JAX starts, so it runs in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import diffprims as dp

    assert jax.device_count() == 8, jax.devices()
    # 48 x 48 targets: full-grid fits use the tiled render_image, batch=0.5 (1152 points)
    # the tiled render; 12 circles is enough for "auto" to pick the tiled path.
    H = 48
    targets = jax.random.uniform(jax.random.key(0), (8, H, H, 3))
    model = dp.Circles.init(12, key=jax.random.key(1), size_range=(0.05, 0.2))
    keys = jax.random.split(jax.random.key(2), 8)

    def by_target(target):
        return dp.fit(model, target, steps=15, key=jax.random.key(3)).model

    def by_key(key):
        return dp.fit(model, targets[0], steps=15, batch=0.5, key=key).model

    def close(a, b, **kw):
        leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return all(np.allclose(x, y, **kw) for x, y in leaves)

    for fn, xs in [(by_target, targets), (by_key, keys)]:
        batched = jax.vmap(fn)(xs)
        for i in range(8):
            single = fn(xs[i])
            member = jax.tree.map(lambda x: x[i], batched)
            assert close(member, single, rtol=1e-5, atol=1e-6), (fn.__name__, i)
        mesh = Mesh(np.array(jax.devices()), ("batch",))
        sharded_xs = jax.device_put(xs, NamedSharding(mesh, PartitionSpec("batch")))
        sharded = jax.jit(jax.vmap(fn))(sharded_xs)
        leaf = jax.tree.leaves(sharded)[0]
        assert len(leaf.sharding.device_set) == 8, leaf.sharding
        assert close(sharded, batched, rtol=1e-6, atol=1e-7), fn.__name__
        gap = max(
            float(np.max(np.abs(x - y)))
            for x, y in zip(jax.tree.leaves(sharded), jax.tree.leaves(batched), strict=True)
        )
        print(fn.__name__, "largest |sharded - unsharded| parameter difference:", gap)
    print("OK")
    """
)


def test_vmap_and_sharded_fits_agree_with_single_fits():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout

"""The member axis sharded over 8 forced CPU devices gives the single-device result."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from nfscale import metrics, models, sharding, train

    assert len(jax.devices()) == 8, jax.devices()
    x = np.linspace(-1, 1, 48, dtype=np.float32)[:, None]
    data = {"x": x, "y": np.sin(3 * np.pi * x).astype(np.float32)}
    field = models.make_field((16,), 1, activation="sine")
    # 5 members on 8 devices: exercises the padding members too.
    members = [train.Member(s, i, 1e-3) for i, s in
               enumerate(["init1", "lecun_normal", "init2", "kaiming_uniform", "siren"])]
    params = train.init_members(field, members, x[:1])
    kw = dict(steps=60, chunk_steps=20, progress=False, target=12.0,
              score_fn=lambda loss, aux: metrics.mse_to_psnr(loss))
    multi = train.fit(models.mse_loss(field), params, members, data, shard=True, **kw)
    single = train.fit(models.mse_loss(field), params, members, data, shard=False, **kw)
    for a, b in zip(jax.tree.leaves(multi.state), jax.tree.leaves(single.state)):
      a, b = np.asarray(a), np.asarray(b)
      assert a.shape == b.shape, (a.shape, b.shape)
      if a.dtype.kind == "f":
        # Per-device batches reorder float32 sums; 60 Adam steps amplify the
        # ~1e-7 differences to a few 1e-6 (measured 2.4e-6).
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
      else:
        np.testing.assert_array_equal(a, b)
    print("OK", multi.steps_run, np.asarray(multi.state.done).tolist())
""")


def test_sharded_equals_single_device():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "OK 60" in out.stdout


# A device-side slice of a padded, sharded state comes out replicated: every
# device would hold the whole ensemble's state (checkpoints and the result).
NO_GATHER_SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from nfscale import models, train

    gathered = []
    device_get = jax.device_get

    def spy(tree):
      for a in jax.tree.leaves(tree):
        if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1:
          if a.ndim and a.sharding.is_fully_replicated:
            gathered.append(a.shape)
      return device_get(tree)

    jax.device_get = spy
    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    data = {"x": x, "y": np.sin(3 * x).astype(np.float32)}
    field = models.make_field((8,), 1, activation="sine")
    for num in (8, 5):
      members = [train.Member("init1", i, 1e-3) for i in range(num)]
      params = train.init_members(field, members, x[:1])
      saved = []
      r = train.fit(models.mse_loss(field), params, members, data, steps=4, chunk_steps=2,
                    progress=False, checkpoint_every=2,
                    on_checkpoint=lambda s, st, h: saved.append(st.params))
      assert len(saved) == 2 and all(
          a.shape[0] == num for p in saved for a in jax.tree.leaves(p)), saved
      for a in jax.tree.leaves(r.state):
        assert a.shape[0] == num, a.shape
        if isinstance(a, jax.Array):
          assert max(s.data.shape[0] for s in a.addressable_shards) == 1, (num, a.sharding)
    assert not gathered, gathered
    print("OK")
""")


def _run_script(script):
  """Runs ``script`` in a fresh CPU process (it forces its own device count); checks OK."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(
      [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "OK" in out.stdout


def test_no_device_holds_every_members_state():
  _run_script(NO_GATHER_SCRIPT)


# Eager jnp padding compiled a few programs per leaf at every new width.
NO_COMPILE_SCRIPT = textwrap.dedent("""
    import logging
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from nfscale import models, train

    compiled = []

    class Names(logging.Handler):
      def emit(self, record):
        if "Compiling " in record.getMessage():
          compiled.append(record.getMessage().split("Compiling ")[1].split(" ")[0])

    logging.getLogger("jax").addHandler(Names())
    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    data = {"x": x, "y": np.sin(3 * x).astype(np.float32)}
    for width in (8, 12):  # a sweep's second width: what compiles anew
      field = models.make_field((width,), 1, activation="sine")
      members = [train.Member("init1", i, 1e-3) for i in range(5)]
      params = train.init_members(field, members, x[:1])
      compiled.clear()
      with jax.log_compiles(True):
        r = train.fit(models.mse_loss(field), params, members, data, steps=4, chunk_steps=2,
                      progress=False)
    assert np.asarray(r.state.done).tolist() == [False] * 5
    eager = [name for name in compiled if "chunk" not in name]
    assert len(eager) <= 5, eager
    print("OK", compiled)
""")


def test_padding_compiles_nothing_per_width():
  _run_script(NO_COMPILE_SCRIPT)

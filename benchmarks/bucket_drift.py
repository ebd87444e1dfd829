"""How far a member trained in a padded width bucket drifts from its unpadded twin.

Run: ``python benchmarks/bucket_drift.py`` (seconds on a CPU). Prints, for two members
of a (8, w) sinc field on 40 points of a 1-D curve (full-batch gradient descent, lr
0.01), the largest parameter difference and both losses after 1 to 60 steps. The two
start bit-identical; float rounding of the padded matmuls then grows, because gradient
descent on a sinc field is chaotic (docs/guide.md, width buckets).
"""

import jax
import jax.numpy as jnp
import numpy as np

from nfscale import models, train, widths


def main() -> None:
  x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
  y = (np.sin(2 * np.pi * x) + np.sin(6 * np.pi * x)).astype(np.float32)
  data = {"x": x, "y": y}
  sp = {"first_bias": "torch", "bias": "torch"}
  field = models.make_field((8, 12), 1, activation="sinc", scheme="init1", scheme_params=sp)
  members = [train.Member("init1", 0, 0.01), train.Member("init2", 1, 0.01)]
  bucket = widths.with_last_width(field, 32)
  padded = widths.init_masked(bucket, members, [5, 12], x[:1], sp, bucket=32)
  padded_loss = widths.masked_loss(models.mse_loss(bucket), 2)
  kw = dict(optimizer="sgd", progress=False, shard=False)

  def gap(a, b):
    return max(
        float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )

  print("width steps  max|param diff|  loss padded  loss unpadded")
  for i, width in enumerate([5, 12]):
    alone = widths.with_last_width(field, width)
    params = train.init_members(alone, [members[i]], x[:1], sp)
    for steps in (1, 5, 20, 60):
      rb = train.fit(padded_loss, padded, members, data, steps=steps, **kw)
      rw = train.fit(models.mse_loss(alone), params, [members[i]], data, steps=steps, **kw)
      diff = gap(
          widths.extract_member(rb.state.params, i, width, 2), train.unstack(rw.state.params, 0)
      )
      loss_b, loss_w = float(rb.state.loss[i]), float(rw.state.loss[0])
      print(f"{width:5d} {steps:5d}  {diff:14.3g}  {loss_b:11.6f}  {loss_w:13.6f}")


if __name__ == "__main__":
  main()

"""Device mesh for ensembles: the member axis is sharded over every device.

No ``pmap``: arrays carry a ``NamedSharding`` and ``jax.jit`` partitions the
vmapped step by itself. On several hosts (after ``jax.distributed.initialize``)
``jax.devices()`` lists every host's devices, so the same mesh spans them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MEMBER_AXIS = "members"


def maybe_initialize_distributed() -> bool:
  """Calls ``jax.distributed.initialize()`` when ``NFSCALE_DISTRIBUTED=1``.

  As in big_vision, multi-host runs are opted into by the environment (the
  cluster's coordinator address etc. come from the usual JAX variables).

  Returns:
    Whether the distributed runtime was initialized.
  """
  if os.environ.get("NFSCALE_DISTRIBUTED", "0") not in ("1", "true", "True"):
    return False
  jax.distributed.initialize()
  return True


def ensemble_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices) named ``members``."""
  devs = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devs, (MEMBER_AXIS,))


def shard_members(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf with its leading (member) axis split over the mesh."""
  spec = NamedSharding(mesh, P(MEMBER_AXIS))
  return jax.tree.map(lambda a: jax.device_put(a, spec), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf fully replicated on the mesh (the shared data)."""
  spec = NamedSharding(mesh, P())
  return jax.tree.map(lambda a: jax.device_put(a, spec), tree)

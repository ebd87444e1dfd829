"""Device mesh for ensembles, and how several hosts share a sweep.

No ``pmap``: arrays carry a ``NamedSharding`` and ``jax.jit`` partitions the
vmapped step by itself. The member axis is sharded over this process's LOCAL
devices (:func:`ensemble_mesh`).

Several hosts (the design). A scaling sweep is many independent points
(arm, N), each a search of a few minutes to hours. Hosts therefore split the
POINTS (host ``i`` of ``H`` takes points ``i, i+H, ...``) and each trains its
points on its own devices only; nothing crosses the network during training.
The alternative, every host training the same ensemble over one global mesh,
would need every host to feed identical arrays in lock step (one slow or
failed host stalls all), makes every host wait for the search's sequential
rounds together, and would have to gather results from non-addressable
shards. Splitting points keeps hosts independent: they meet only at the
start (``jax.distributed.initialize``) and at the end (a barrier before the
first host writes the merged report), and a lost host costs only its own
points, which a rerun resumes.

Starting a run: :func:`initialize_distributed` takes the coordinator address,
the process count and this process's id from its arguments (the launcher's
flags) or from the environment (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), so the same command runs as N
local processes or on a cluster; with only ``NFSCALE_DISTRIBUTED=1`` JAX's
own cluster detection (SLURM, Cloud TPU, ...) fills them in. On CPU it selects
the gloo collectives (for collectives across processes; the final barrier is
the coordination service's own, which waits however long the hosts take).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MEMBER_AXIS = "members"

#: Environment variables read by :func:`distributed_settings`.
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_OPT_IN = "NFSCALE_DISTRIBUTED"


def distributed_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
  """The arguments of ``jax.distributed.initialize``, or None for a single process.

  Explicit arguments win over the environment. A run is distributed when a
  process count above 1 is given (with an address and an id), or when
  ``NFSCALE_DISTRIBUTED=1`` asks JAX to detect the cluster (then the missing
  values stay None for JAX to fill in).

  Args:
    coordinator_address: ``host:port`` of process 0's coordinator.
    num_processes: number of processes.
    process_id: this process's id in ``[0, num_processes)``.
    env: the environment (default ``os.environ``).

  Returns:
    ``{"coordinator_address", "num_processes", "process_id"}`` or None.

  Raises:
    ValueError: a count above 1 without an address or id, an id or address
      without a count, an id outside ``[0, count)``, or a value that is not an
      integer (naming the flag and its environment variable).

  Example:
    >>> distributed_settings(env={}) is None
    True
    >>> distributed_settings(env={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    ...                           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
    {'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 1}
  """
  env = os.environ if env is None else env

  def as_int(value: Any, flag: str, var: str) -> int | None:
    if value is None or value == "":
      value = env.get(var)
    if value is None or value == "":
      return None
    try:
      return int(value)
    except (TypeError, ValueError):
      raise ValueError(f"--{flag} / {var} must be an integer, got {value!r}.") from None

  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = as_int(num_processes, "num_processes", ENV_NUM_PROCESSES)
  pid = as_int(process_id, "process_id", ENV_PROCESS_ID)
  opted_in = env.get(ENV_OPT_IN, "0") in ("1", "true", "True")
  if count is None and not opted_in:
    # An id or an address alone means a multi-process launch whose count was
    # forgotten: running as one process would leave the others waiting.
    given = [
        f"--{f} / {v} ({val})"
        for f, v, val in (
            ("process_id", ENV_PROCESS_ID, pid),
            ("coordinator_address", ENV_COORDINATOR, address),
        )
        if val is not None
    ]
    if given:
      raise ValueError(
          f"{' and '.join(given)} set without --num_processes / {ENV_NUM_PROCESSES}: "
          f"give the process count (or {ENV_OPT_IN}=1 on a cluster JAX can detect), "
          "or unset them to run as one process."
      )
    return None
  if count is not None and count < 1:
    raise ValueError(f"--num_processes / {ENV_NUM_PROCESSES} must be >= 1, got {count}.")
  if count is not None and pid is not None and not 0 <= pid < count:
    raise ValueError(f"--process_id / {ENV_PROCESS_ID} must be in [0, {count}), got {pid}.")
  if count == 1 and not opted_in:
    return None
  if count is not None and count > 1 and not opted_in:
    missing = [
        f"--{f} / {v}"
        for f, v, val in (
            ("coordinator_address", ENV_COORDINATOR, address),
            ("process_id", ENV_PROCESS_ID, pid),
        )
        if val is None
    ]
    if missing:
      raise ValueError(
          f"a run of {count} processes also needs {' and '.join(missing)} "
          f"(or {ENV_OPT_IN}=1 on a cluster JAX can detect)."
      )
  return {"coordinator_address": address, "num_processes": count, "process_id": pid}


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
  """Starts the JAX distributed runtime when :func:`distributed_settings` says so.

  Args:
    coordinator_address: see :func:`distributed_settings`.
    num_processes: see :func:`distributed_settings`.
    process_id: see :func:`distributed_settings`.

  Returns:
    Whether the distributed runtime was initialized.
  """
  settings = distributed_settings(coordinator_address, num_processes, process_id)
  if settings is None:
    return False
  # CPU processes need a cross-process collectives backend for any collective
  # across processes. It only configures the CPU client (harmless next to a
  # GPU) and must be set before the first backend use, i.e. here.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**settings)
  return True


def maybe_initialize_distributed() -> bool:
  """:func:`initialize_distributed` from the environment alone (old entry point)."""
  return initialize_distributed()


#: How long :func:`barrier` waits for the other processes, in milliseconds
#: (about 24 days). Hosts finish their shares of a sweep hours apart; a
#: process that died fails the barrier sooner, at the coordination service's
#: heartbeat timeout.
BARRIER_TIMEOUT_MS = 2**31 - 1


def barrier(name: str) -> None:
  """Waits until every process reaches ``name`` (no-op for a single process).

  A barrier of the coordination service, not a collective: JAX's
  ``sync_global_devices`` is an all-gather whose CPU (gloo) rendezvous gives
  up after 30 seconds: a host that finished its points a minute before the
  others failed, and both processes hung.
  """
  if jax.process_count() > 1:
    try:  # a private module (JAX's own checkpointing waits on this client)
      from jax._src import distributed

      client = distributed.global_state.client
    except (ImportError, AttributeError):  # moved in another JAX version
      client = None
    if client is None:  # or not started by jax.distributed (e.g. a TPU runtime's own)
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(name)
      return
    client.wait_at_barrier(name, timeout_in_ms=BARRIER_TIMEOUT_MS)


def ensemble_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-D mesh named ``members`` over ``devices`` (default: this process's local devices).

  Local, not global: hosts split a sweep's points and train them
  independently (see the module docstring), so an ensemble never spans
  hosts. In a single process local and global devices are the same.
  """
  devs = np.asarray(devices if devices is not None else jax.local_devices())
  return Mesh(devs, (MEMBER_AXIS,))


def shard_members(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf with its leading (member) axis split over the mesh."""
  spec = NamedSharding(mesh, P(MEMBER_AXIS))
  return jax.tree.map(lambda a: jax.device_put(a, spec), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf fully replicated on the mesh (the shared data)."""
  spec = NamedSharding(mesh, P())
  return jax.tree.map(lambda a: jax.device_put(a, spec), tree)

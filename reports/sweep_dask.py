"""The columnar sweep on Dask distributed: the same chunks as :func:`reports.sweep.run_sweep`, run on a cluster.

``dask_client("local", workers)`` starts a LocalCluster (single-threaded workers, no dashboard,
scratch space and the workers' TMPDIR in a temporary folder removed afterwards); ``dask_client("tcp://HOST:8786")``
connects to a running scheduler.  :func:`run_sweep_dask` sends the plan (small per-axis tables)
to every worker once, maps :func:`reports.sweep.evaluate_chunk` over the chunk list and merges
the parts in chunk order, so the result is identical to the single-process run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from golden.errors import ConfigError
from golden.files import temporary_folder

from .energy import DEFAULTS, EnergyTable, Synthesis
from .networks import Layer
from .sweep import DEFAULT_CHUNK, SweepPlan, SweepResult, SweepSpec, chunks, evaluate_chunk, merge, plan_sweep

SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")
CONNECT_TIMEOUT = "10s"


@contextmanager
def dask_client(address: str, workers: int = 1, processes: bool = True, scratch: str | Path | None = None,
                timeout: str = CONNECT_TIMEOUT) -> Iterator:
    """A ``distributed.Client``: of a new LocalCluster (``address == "local"``) or of the scheduler at ``address``."""
    import dask
    from distributed import Client, LocalCluster

    if address != "local":
        if not address.startswith(SCHEMES):
            raise ConfigError(f"--dask takes 'local' or a scheduler address like tcp://HOST:8786, got {address!r}")
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {error}") from None
        with client:
            yield client
        return
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"a LocalCluster needs a positive number of workers, got {workers!r}")
    # the workers' scratch, and their TMPDIR (the temporary folders their jobs make: RTL builds), is a lutmac
    # temporary folder, so SIGTERM/SIGINT (golden.files.removed_on_signal) removes it too, workers stopped first
    with temporary_folder(scratch, "lutmac-dask-") as folder, \
            dask.config.set({"temporary-directory": folder}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None,
                         local_directory=folder, **({"env": {"TMPDIR": str(folder)}} if processes else {})) as cluster, \
            Client(cluster) as client:
        yield client


def evaluate_task(task: tuple[int, int, int], plan: SweepPlan) -> dict:
    return evaluate_chunk(plan, *task)


def run_sweep_dask(layers: list[Layer], spec: SweepSpec, synthesis: Synthesis, client, table: EnergyTable = DEFAULTS,
                   chunk: int = DEFAULT_CHUNK, limit: int | None = None) -> SweepResult:
    """:func:`reports.sweep.run_sweep` with the chunks evaluated on ``client``'s workers."""
    plan = plan_sweep(layers, spec, synthesis, table)
    shared = client.scatter(plan, broadcast=True, hash=False)  # a fresh key: an earlier run's release cannot cancel it
    futures = client.map(evaluate_task, chunks(plan, chunk, limit), plan=shared, pure=False)
    return merge(plan, client.gather(futures))

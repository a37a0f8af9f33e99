"""The sweep on Dask distributed (a 2-worker LocalCluster) gives exactly the single-process result."""

import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pytest

from golden.errors import ConfigError
from reports.energy import load_synthesis
from reports.networks import network_layers
from reports.sweep import SweepSpec, run_sweep
from reports.sweep_dask import dask_client, run_sweep_dask


def test_two_worker_cluster_matches_single_process(synth_path, tmp_path):
    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    spec = SweepSpec(arrays=((4, 4), (16, 8), (128, 32)), filter_kb=(4.0, 64.0), batch=(1, 8))
    local = run_sweep(layers, spec, synthesis, chunk=9)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with dask_client("local", workers=2, processes=False, scratch=scratch) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        distributed = run_sweep_dask(layers, spec, synthesis, client, chunk=9)
        first = run_sweep_dask(layers, spec, synthesis, client, chunk=4, limit=10)
    assert list(distributed.columns) == list(local.columns)
    for name in local.columns:
        np.testing.assert_array_equal(distributed.columns[name], local.columns[name])
    np.testing.assert_array_equal(first.total_energy_pj, local.total_energy_pj[:10])
    assert list(scratch.iterdir()) == []  # the workers' scratch space went with the cluster


@pytest.mark.parametrize("address, message", [("localhost:8786", "takes 'local' or a scheduler address"),
                                              ("tcp://127.0.0.1:1", "cannot reach the Dask scheduler")])
def test_bad_addresses(address, message):
    with pytest.raises(ConfigError, match=message), dask_client(address, timeout="1s"):
        pass


def test_bad_worker_count(tmp_path):
    with pytest.raises(ConfigError, match="positive number of workers"), dask_client("local", workers=0, scratch=tmp_path):
        pass


def test_a_running_scheduler_by_its_tcp_address(synth_path, tmp_path):
    import dask
    from distributed import LocalCluster

    synthesis = load_synthesis(synth_path)
    layers = network_layers("resnet20")
    spec = SweepSpec(arrays=((4, 4), (8, 8)), dataflows=("os", "lutmac"))
    with dask.config.set({"temporary-directory": str(tmp_path)}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                         dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with dask_client(cluster.scheduler_address) as client:
            remote = run_sweep_dask(layers, spec, synthesis, client, chunk=5)
    local = run_sweep(layers, spec, synthesis)
    for name in local.columns:
        np.testing.assert_array_equal(remote.columns[name], local.columns[name])


def test_a_signal_removes_the_clusters_scratch_folder(tmp_path):
    """SIGTERM while a LocalCluster runs (a killed ``lutmac ablation``/``rtl-scale``) leaves no lutmac-dask-* folder."""
    script = textwrap.dedent(f"""
        import os, signal
        from golden.files import removed_on_signal
        from reports.sweep_dask import dask_client
        with removed_on_signal(), dask_client("local", workers=1, processes=False, scratch={str(tmp_path)!r}):
            assert [p.name for p in os.scandir({str(tmp_path)!r})], "the cluster has a scratch folder"
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + 15, done.stderr
    assert "removed 1 temporary folder" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_signal_stops_the_workers_jobs_and_removes_their_folders(tmp_path):
    """SIGTERM to a run whose worker process has a job under way (an RTL build's lutmac-network-* folder, a
    simulator child): the job's folder was made in the cluster's scratch (the workers' TMPDIR) and is gone with it,
    and the job's child process is stopped, not left running as an orphan."""
    script = textwrap.dedent(f"""
        import os, signal, subprocess, sys
        from golden.files import make_temporary_folder, removed_on_signal
        from reports.sweep_dask import dask_client

        def job():
            folder = make_temporary_folder(None, "lutmac-network-")
            child = subprocess.Popen(["sleep", "300"])
            return str(folder), child.pid

        with removed_on_signal(), dask_client("local", workers=1, scratch={str(tmp_path)!r}) as client:
            folder, pid = client.submit(job, pure=False).result()
            print(folder, pid, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 128 + 15, done.stderr
    folder, pid = done.stdout.split()
    assert folder.startswith(str(tmp_path / "lutmac-dask-")) and "/lutmac-network-" in folder
    assert list(tmp_path.iterdir()) == []
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE

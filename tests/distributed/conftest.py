"""A real dask cluster on loopback: ``dask scheduler`` and ``dask worker`` processes.

Each process is started in its own session (process group) from this virtualenv's ``dask``
command, so a test can kill one worker (nanny and worker process together, as when a
node is lost) and the teardown can always end every process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DASK = Path(sys.executable).with_name("dask")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LoopbackCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def kill_worker_of(self, pid: int) -> subprocess.Popen:
        """SIGKILL the whole process group (nanny + worker) of the worker process ``pid``."""
        group = os.getpgid(pid)
        worker = next(w for w in self.workers if w.pid == group)
        os.killpg(group, signal.SIGKILL)
        worker.wait(timeout=10)
        return worker

    def stop(self) -> None:
        procs = [*self.workers, self.scheduler]
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def start_cluster(tmp: Path, n_workers: int = 2) -> LoopbackCluster:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    log = tmp / "logs"
    log.mkdir(parents=True, exist_ok=True)

    def spawn(args: list[str], name: str) -> subprocess.Popen:
        out = open(log / f"{name}.log", "wb")
        return subprocess.Popen([str(DASK), *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    cluster = LoopbackCluster(
        address,
        spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler"),
    )
    try:
        for i in range(n_workers):
            cluster.workers.append(spawn(
                ["worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--name", f"w{i}", "--local-directory", str(tmp / f"w{i}"),
                 "--death-timeout", "60"],
                f"worker{i}",
            ))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=90)
    except BaseException:
        cluster.stop()
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(log.glob("*.log")))
        pytest.fail(f"could not start a dask cluster on {address}:\n{logs}")
    return cluster


@pytest.fixture(scope="module")
def loopback_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.stop()

"""A Spark standalone master and one worker on loopback, started from the installed pyspark.

    <home>/master.log, worker.log   each daemon's output
    <home>/work/                    the worker's scratch space: app-*/<executor>/stderr
    <home>/conf/                    an empty SPARK_CONF_DIR: the daemons must not read the
                                    project's spark-defaults.conf, which is the driver's

The daemons run in their own process groups (`bin/spark-class` execs java), so `stop`
ends each one, and the executors a worker forked, by the id it started, never by name.

Used by tests/cluster/test_cluster.py (`make cluster-test`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the daemon and its log."""


def spark_class() -> Path:
    """bin/spark-class of the pyspark installed in this interpreter."""
    from pyspark.find_spark_home import _find_spark_home

    path = Path(_find_spark_home()) / "bin" / "spark-class"
    if not path.exists():
        raise ClusterError(f"{path} missing: the installed pyspark ships no spark-class; "
                           "reinstall it (make install) or set SPARK_HOME to a Spark 4 build")
    return path


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Standalone:
    """One master and one worker; `start()` returns once the worker is registered."""

    home: Path
    port: int = 7077
    cores: int = 2
    memory: str = "2g"
    webui_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}/json/"

    def _spawn(self, name: str, *args: str) -> None:
        env = {**os.environ, "SPARK_CONF_DIR": str(self.home / "conf"),
               "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
        with open(self.home / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [str(spark_class()), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        log.info("started the %s (pid %d), log %s", name, self.procs[name].pid,
                 self.home / f"{name}.log")

    def start(self, timeout: float = 120.0) -> Standalone:
        if not port_free(self.port):
            raise ClusterError(f"port {self.port} on 127.0.0.1 is in use, so no master can "
                               f"listen there: stop what holds it (ss -ltnp 'sport = "
                               f":{self.port}') or set SHOPRECS_CLUSTER_PORT to a free port")
        for sub in ("work", "conf"):
            shutil.rmtree(self.home / sub, ignore_errors=True)
            (self.home / sub).mkdir(parents=True)
        self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.webui_port))
        self._spawn("worker", "org.apache.spark.deploy.worker.Worker", self.url,
                    "--host", "127.0.0.1", "--port", str(free_port()),
                    "--webui-port", str(free_port()), "--cores", str(self.cores),
                    "--memory", self.memory, "--work-dir", str(self.home / "work"))
        try:
            self.wait_registered(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def state(self) -> dict | None:
        """The master's JSON status, or None while it does not answer."""
        try:
            with urllib.request.urlopen(self.json_url, timeout=2) as resp:
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"the {name} exited with status {proc.returncode} before the worker "
                    f"registered; {self.home / f'{name}.log'} ends with:\n"
                    f"{tail(self.home / f'{name}.log')}")

    def wait_registered(self, timeout: float) -> None:
        """Poll the master's JSON until one worker is ALIVE, logging progress every 5 s."""
        started = time.monotonic()
        last_report, state = 0.0, None
        while (waited := time.monotonic() - started) < timeout:
            self._check_alive()
            state = self.state()
            if state and state.get("aliveworkers", 0) >= 1:
                log.info("cluster %s up after %.1f s: %d worker(s), %d cores, %d MB", self.url,
                         waited, state["aliveworkers"], state["cores"], state["memory"])
                return
            if waited - last_report >= 5:
                last_report = waited
                log.info("waiting for the cluster (%.0f s of %.0f): %s", waited, timeout,
                         "master not answering yet" if state is None
                         else "master up, worker not registered yet")
            time.sleep(0.5)
        if state is None:
            raise ClusterError(f"the master did not answer at {self.json_url} within "
                               f"{timeout:.0f} s; {self.home / 'master.log'} ends with:\n"
                               f"{tail(self.home / 'master.log')}")
        raise ClusterError(f"the master at {self.url} answers but no worker registered "
                           f"within {timeout:.0f} s; {self.home / 'worker.log'} ends with:\n"
                           f"{tail(self.home / 'worker.log')}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM each daemon's process group (worker first), SIGKILL after `grace` s."""
        for name in ("worker", "master"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("the %s (pid %d) ignored SIGTERM for %.0f s: killing it", name,
                            proc.pid, grace)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            _reap_group(proc.pid)
            log.info("stopped the %s (pid %d)", name, proc.pid)


def _reap_group(pgid: int, grace: float = 10.0) -> None:
    """Wait for what else the group held (a worker's executors), SIGKILL it if it lingers."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    log.warning("processes of group %d outlived their daemon: killing them", pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass

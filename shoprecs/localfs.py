"""A local file system for Spark that does not start a process per file it writes.

pip's pyspark ships no Hadoop native library, so Hadoop's local file system sets the
permission of each file and directory it creates by running `chmod` in a new process:
three per Parquet file (the file, its checksum, its directory), ~3 ms each. Cleaning a
year of orders writes two files per day, and the night spent seconds starting processes
(bench/RESULTS.md, bench-scale). `shoprecs/java/NoForkLocalFileSystem.java` makes the
same permission change through java.nio.

`make install` builds its jar into the virtual environment (`python -m shoprecs.localfs`,
with the JDK's javac against the installed pyspark's Hadoop). `spark_options` turns it on
for local-mode sessions; on a cluster the executors would need the jar on their classpath,
so there Spark keeps Hadoop's own file system (install Hadoop's native library on the
nodes instead). Without javac, or without the jar, nothing changes but the speed.

Run with: python -m shoprecs.localfs   (builds or rebuilds the jar)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "java" / "NoForkLocalFileSystem.java"
FILE_SYSTEM = "shoprecs.hadoop.NoForkLocalFileSystem"


def jar_path() -> Path:
    """Where `build` puts the jar: inside the interpreter's environment, beside the pyspark
    (and so the Hadoop) it was compiled against."""
    return Path(sys.prefix) / "share" / "shoprecs" / "localfs.jar"


def built() -> bool:
    jar = jar_path()
    return jar.exists() and jar.stat().st_mtime >= SOURCE.stat().st_mtime


def spark_options(master: str) -> dict[str, str]:
    """Spark settings that use the no-fork file system: for a local master with the jar
    built, else none."""
    # local-cluster[...] starts executor JVMs of its own, without the driver's class path
    if not (master == "local" or master.startswith("local[")) or not built():
        return {}
    return {"spark.driver.extraClassPath": str(jar_path()),
            "spark.hadoop.fs.file.impl": FILE_SYSTEM}


def build() -> Path:
    """Compile the Java source against pyspark's jars and package it; return the jar."""
    import pyspark

    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if not (javac and jar_tool):
        raise FileNotFoundError("javac and jar not found: install a JDK 17 (Debian: "
                                "openjdk-17-jdk-headless) to build the local file system")
    jars = Path(pyspark.__file__).resolve().parent / "jars"
    out = jar_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as classes:
        subprocess.run([javac, "--release", "17", "-nowarn", "-cp", f"{jars}/*", "-d", classes,
                        str(SOURCE)], check=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([jar_tool, "cf", str(tmp), "-C", classes, "."], check=True)
        tmp.replace(out)
    return out


def main() -> int:
    try:
        print(f"built {build()} ({FILE_SYSTEM}: local Spark writes without a chmod process "
              "per file)")
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"note: the no-fork local file system was not built ({exc}); Spark keeps "
              "Hadoop's, which starts a chmod process per file it writes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Intel's MKL for Spark's ALS, when installed (`pip install 'shoprecs[mkl]'`, `make mkl`).

Spark's ALS solves its normal equations through netlib (dev.ludovic.netlib), which loads
the system's `libblas.so.3` and `liblapack.so.3` (Debian's OpenBLAS: `make native-blas`)
and falls back to Java without them. The `mkl` package puts one dynamic library,
`lib/libmkl_rt.so.*`, in the environment; netlib loads it when its system properties
name it. They reach every JVM this process starts through JDK_JAVA_OPTIONS, which the
`java` launcher reads and which composes with any Spark options (an operator's own
`-Ddev.ludovic.netlib...` comes later on the command line, and wins). MKL runs one
thread per call: Spark already runs a task per core.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

PROPERTIES = ("dev.ludovic.netlib.blas.nativeLibPath", "dev.ludovic.netlib.lapack.nativeLibPath")


def library(prefix: Path = Path(sys.prefix)) -> Path | None:
    """MKL's single dynamic library in the environment at `prefix`, or None."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.name.split(".so", 1)[1]))

    found = [p for p in (prefix / "lib").glob("libmkl_rt.so*") if p.is_file()]
    return max(found, key=version) if found else None


def configure_environment(prefix: Path = Path(sys.prefix)) -> None:
    """One thread per BLAS call in this process's JVMs, and netlib pointed at MKL when it
    is installed at `prefix`."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    lib = library(prefix)
    if lib is None:
        return
    options = " ".join(f"-D{p}={lib}" for p in PROPERTIES)
    current = os.environ.get("JDK_JAVA_OPTIONS", "")
    if options not in current:
        os.environ["JDK_JAVA_OPTIONS"] = f"{current} {options}".strip()
    os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")

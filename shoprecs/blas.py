"""The native BLAS and LAPACK behind Spark's ALS: Intel's MKL from the virtual environment.

Spark's ALS solves, every iteration, one normal equation per shopper and per goods: a
rank-1 update per rating (BLAS `dspr`) and a packed Cholesky solve (LAPACK `dppsv`). It
calls them through netlib (dev.ludovic.netlib), which by default loads the system's
`libblas.so.3` and `liblapack.so.3` (Debian's OpenBLAS: `make native-blas`) and falls back
to Java when there are none. On x86-64 Linux `make install` puts MKL in the virtual
environment (the `mkl` package, Intel Simplified Software License), and `java_options`
points netlib at its single dynamic library, `lib/libmkl_rt.so.*`. Measured on Online
Retail's bench-als fit (rank 64), MKL's `dppsv` is 1.5–1.8× as fast as OpenBLAS's
and the fit took ~20% less CPU (bench/RESULTS.md, bench-als).

MKL runs sequentially (MKL_THREADING_LAYER, `ENVIRONMENT`): Spark already runs one task
per core. An operator whose driver options already name a netlib library keeps it.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

PROPERTIES = ("dev.ludovic.netlib.blas.nativeLibPath", "dev.ludovic.netlib.lapack.nativeLibPath")
ENVIRONMENT = {"MKL_THREADING_LAYER": "SEQUENTIAL"}


def library(prefix: Path = Path(sys.prefix)) -> Path | None:
    """MKL's single dynamic library in the environment at `prefix`, or None."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.name.split(".so", 1)[1]))

    found = [p for p in (prefix / "lib").glob("libmkl_rt.so*") if p.is_file()]
    return max(found, key=version) if found else None


def java_options(configured: str = "", prefix: Path = Path(sys.prefix)) -> str:
    """The JVM options that make netlib load MKL: "" when MKL is not installed or when
    `configured` (the operator's Java options) already names a netlib library."""
    lib = library(prefix)
    if lib is None or "-Ddev.ludovic.netlib." in configured:
        return ""
    return " ".join(f"-D{p}={lib}" for p in PROPERTIES)

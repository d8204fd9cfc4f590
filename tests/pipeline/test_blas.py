"""MKL for Spark's ALS, when the optional extra installed it: found, and handed to the JVMs."""
from __future__ import annotations

from pipeline import blas


def test_the_library_is_the_newest_libmkl_rt_in_the_environment(tmp_path):
    assert blas.library(tmp_path) is None
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmkl_core.so.3").touch()
    (lib / "libmkl_rt.so.2").touch()
    (lib / "libmkl_rt.so.10").touch()
    (lib / "libmkl_rt.so.11.dir").mkdir()
    assert blas.library(tmp_path) == lib / "libmkl_rt.so.10"


def test_mkl_reaches_the_jvms_through_jdk_java_options(tmp_path, monkeypatch):
    for name in ("JDK_JAVA_OPTIONS", "MKL_THREADING_LAYER", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    blas.configure_environment(tmp_path)  # no MKL: nothing for netlib, one BLAS thread
    assert "JDK_JAVA_OPTIONS" not in blas.os.environ
    assert blas.os.environ["OPENBLAS_NUM_THREADS"] == "1"

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libmkl_rt.so.2").touch()
    monkeypatch.setenv("JDK_JAVA_OPTIONS", "-Xss4m")  # the operator's own stay first
    blas.configure_environment(tmp_path)
    blas.configure_environment(tmp_path)  # a second session adds nothing twice
    lib = tmp_path / "lib" / "libmkl_rt.so.2"
    assert blas.os.environ["JDK_JAVA_OPTIONS"] == (
        f"-Xss4m -Ddev.ludovic.netlib.blas.nativeLibPath={lib} "
        f"-Ddev.ludovic.netlib.lapack.nativeLibPath={lib}")
    assert blas.os.environ["MKL_THREADING_LAYER"] == "SEQUENTIAL"

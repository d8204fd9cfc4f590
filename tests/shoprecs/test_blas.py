"""MKL for Spark's ALS: found in the environment, handed to the JVMs, and really loaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from py4j.java_gateway import get_field

from shoprecs import blas
from shoprecs import spark as shoprecs_spark

MKL = "/env/lib/libmkl_rt.so.3"
NATIVE = (f"-Ddev.ludovic.netlib.blas.nativeLibPath={MKL} "
          f"-Ddev.ludovic.netlib.lapack.nativeLibPath={MKL}")


def test_the_library_is_the_newest_libmkl_rt_in_the_environment(tmp_path):
    assert blas.library(tmp_path) is None
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmkl_core.so.3").touch()
    (lib / "libmkl_rt.so.2").touch()
    (lib / "libmkl_rt.so.10").touch()
    (lib / "libmkl_rt.so.11.dir").mkdir()
    assert blas.library(tmp_path) == lib / "libmkl_rt.so.10"
    assert blas.java_options(prefix=tmp_path) == " ".join(
        f"-D{p}={lib / 'libmkl_rt.so.10'}" for p in blas.PROPERTIES)


def test_no_mkl_or_an_operators_own_netlib_setting_gives_no_options(tmp_path, monkeypatch):
    assert blas.java_options(prefix=tmp_path) == ""
    monkeypatch.setattr(blas, "library", lambda prefix=None: Path(MKL))
    assert blas.java_options("-XX:+UseParallelGC") == NATIVE
    assert blas.java_options("-Ddev.ludovic.netlib.lapack.nativeLib=openblas") == ""


@pytest.fixture
def mkl(monkeypatch):
    monkeypatch.setattr(blas, "library", lambda prefix=None: Path(MKL))


def test_local_sessions_point_the_driver_and_executors_at_mkl(mkl, monkeypatch):
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    options = shoprecs_spark.native_blas_options("local[2]", {"spark.x": "1"})
    assert options == {"spark.x": "1", "spark.driver.defaultJavaOptions": NATIVE,
                       "spark.executor.defaultJavaOptions": NATIVE}
    # a standalone cluster on loopback shares the path; a remote one has its own
    assert "spark.executor.defaultJavaOptions" in shoprecs_spark.native_blas_options(
        "spark://127.0.0.1:7077", {})
    assert shoprecs_spark.native_blas_options("spark://10.1.2.3:7077", {}) == {
        "spark.driver.defaultJavaOptions": NATIVE}


def test_mkl_joins_the_operators_java_options_and_yields_to_their_netlib(mkl, monkeypatch,
                                                                         tmp_path):
    conf = tmp_path / "spark-defaults.conf"
    conf.write_text("spark.driver.defaultJavaOptions -Dx=1\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert shoprecs_spark.session_options("yarn") == {
        "spark.driver.defaultJavaOptions": f"-Dx=1 {NATIVE}"}
    conf.write_text("spark.driver.extraJavaOptions "
                    "-Ddev.ludovic.netlib.lapack.nativeLibPath=/opt/lapack.so\n")
    assert shoprecs_spark.session_options("yarn") == {}


@pytest.mark.spark
def test_the_suites_session_solves_through_mkl_when_installed(spark):
    """The shared session (built like every entry point's) loaded MKL through netlib, and a
    packed Cholesky solve, as ALS makes per shopper, gives numpy's answer."""
    lib = blas.library()
    if lib is None:
        pytest.skip("MKL is not in this environment (the `mkl` package is for x86-64 Linux): "
                    "ALS uses the system's BLAS and LAPACK, or Java's")
    jvm = spark.sparkContext._jvm
    for prop in blas.PROPERTIES:
        assert jvm.java.lang.System.getProperty(prop) == str(lib)
    jvm.dev.ludovic.netlib.blas.NativeBLAS.getInstance()  # raises when it could not load
    lapack = jvm.dev.ludovic.netlib.lapack.NativeLAPACK.getInstance()

    rng = np.random.default_rng(7)
    n = 16
    a = rng.random((n, n))
    a = a @ a.T + n * np.eye(n)
    b = rng.random(n)
    gateway = spark.sparkContext._gateway
    packed = gateway.new_array(gateway.jvm.double, n * (n + 1) // 2)
    for i, v in enumerate(a[i, j] for j in range(n) for i in range(j + 1)):
        packed[i] = float(v)
    rhs = gateway.new_array(gateway.jvm.double, n)
    for i, v in enumerate(b):
        rhs[i] = float(v)
    info = jvm.org.netlib.util.intW(0)
    lapack.dppsv("U", n, 1, packed, rhs, n, info)
    assert get_field(info, "val") == 0
    np.testing.assert_allclose(list(rhs), np.linalg.solve(a, b), rtol=1e-10)

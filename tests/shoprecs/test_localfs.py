"""The no-fork local file system (shoprecs/localfs.py): when it is used, and that files
and directories Spark writes through it get Hadoop's usual permissions."""
from __future__ import annotations

import os
import stat

import pytest

from shoprecs import localfs
from shoprecs.spark import local_options

needs_jar = pytest.mark.skipif(not localfs.built(), reason=(
    "the no-fork local file system is not built: `make install` builds it with the JDK's "
    "javac (python -m shoprecs.localfs says why it could not)"))


def test_only_local_masters_with_the_jar_built_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(localfs, "jar_path", lambda: tmp_path / "absent.jar")
    assert localfs.spark_options("local[2]") == {}
    jar = tmp_path / "localfs.jar"
    jar.write_bytes(b"")
    monkeypatch.setattr(localfs, "jar_path", lambda: jar)
    assert localfs.spark_options("local[*]") == {
        "spark.driver.extraClassPath": str(jar), "spark.hadoop.fs.file.impl": localfs.FILE_SYSTEM}
    # executors elsewhere would not find the class: a cluster keeps Hadoop's file system
    assert localfs.spark_options("local") != {}
    for master in ("spark://127.0.0.1:7077", "yarn", "k8s://https://10.0.0.1:6443",
                   "local-cluster[2,1,1024]"):
        assert localfs.spark_options(master) == {}


def test_a_jar_older_than_its_source_is_not_used(monkeypatch, tmp_path):
    jar = tmp_path / "localfs.jar"
    jar.write_bytes(b"")
    monkeypatch.setattr(localfs, "jar_path", lambda: jar)
    source = tmp_path / "NoForkLocalFileSystem.java"
    source.write_text("// newer")
    monkeypatch.setattr(localfs, "SOURCE", source)
    older = source.stat().st_mtime - 60
    os.utime(jar, (older, older))
    assert not localfs.built()
    assert localfs.spark_options("local[2]") == {}


def test_the_jar_joins_a_configured_driver_class_path(monkeypatch, tmp_path):
    jar = tmp_path / "localfs.jar"
    jar.write_bytes(b"")
    monkeypatch.setattr(localfs, "jar_path", lambda: jar)
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.extraClassPath /opt/x.jar\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert local_options("local[2]")["spark.driver.extraClassPath"] == f"/opt/x.jar:{jar}"


def test_an_operators_own_local_file_system_is_kept(monkeypatch, tmp_path):
    jar = tmp_path / "localfs.jar"
    jar.write_bytes(b"")
    monkeypatch.setattr(localfs, "jar_path", lambda: jar)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    (tmp_path / "spark-defaults.conf").write_text("spark.master local[2]\n")
    assert local_options("local[2]")["spark.hadoop.fs.file.impl"] == localfs.FILE_SYSTEM
    (tmp_path / "spark-defaults.conf").write_text(
        "spark.hadoop.fs.file.impl org.apache.hadoop.fs.RawLocalFileSystem\n")
    assert local_options("local[2]") == {}


@needs_jar
@pytest.mark.spark
def test_spark_writes_through_it_with_hadoops_permissions(spark, tmp_path):
    jvm = spark.sparkContext._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI("file:///"), spark.sparkContext._jsc.hadoopConfiguration())
    assert fs.getClass().getName() == localfs.FILE_SYSTEM

    out = tmp_path / "by_day"
    spark.createDataFrame([(1, "2024-01-01"), (2, "2024-01-02")], "n int, dt string") \
        .write.partitionBy("dt").parquet(str(out))
    assert spark.read.parquet(str(out)).count() == 2
    written = [p for p in out.rglob("*") if not p.name.startswith((".", "_"))]
    dirs = [p for p in written if p.is_dir()]
    files = [p for p in written if p.is_file()]
    assert len(dirs) == 2 and len(files) == 2
    # Hadoop's defaults under its umask 022, as its chmod process would have set them
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o755}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    assert all((p.parent / f".{p.name}.crc").exists() for p in files)  # still checksummed

    target = tmp_path / "one"
    target.write_text("x")
    perm = jvm.org.apache.hadoop.fs.permission.FsPermission.valueOf("-rw-r-----")
    fs.setPermission(jvm.org.apache.hadoop.fs.Path(target.as_uri()), perm)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640

"""Every entry point's session reads spark-defaults.conf; SHOPRECS_SPARK_MASTER overrides
its master and nothing else. One JVM, in a fresh process: the suite's shared session
would hide both (getOrCreate returns it, whatever the configuration says)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shoprecs import localfs
from shoprecs.spark import (
    MASTER_ENV,
    REPO_ROOT,
    configure_environment,
    configured_master,
    master_override,
)

SCRIPT = """
import json, os
from shoprecs.spark import get_spark
seen = []
for master in ("", "local[1]"):  # the builder's master outlives stop() in one JVM
    os.environ["SHOPRECS_SPARK_MASTER"] = master
    spark = get_spark("shoprecs-config-check")
    conf = spark.sparkContext.getConf()
    seen.append({"master": spark.sparkContext.master,
                 "serializer": conf.get("spark.serializer"),
                 "aqe": conf.get("spark.sql.adaptive.enabled"),
                 "partitions": conf.get("spark.sql.shuffle.partitions"),
                 "file_system": spark._jvm.org.apache.hadoop.fs.FileSystem.get(
                     spark._jvm.java.net.URI("file:///"),
                     spark.sparkContext._jsc.hadoopConfiguration()).getClass().getName()})
    spark.stop()
print("RESULT " + json.dumps(seen))
"""


def defaults() -> dict[str, str]:
    pairs = (line.split(None, 1) for line in
             (REPO_ROOT / "spark-defaults.conf").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key: value.strip() for key, value in pairs}


def test_master_override_reads_the_environment(monkeypatch):
    monkeypatch.delenv(MASTER_ENV, raising=False)
    assert master_override() is None
    monkeypatch.setenv(MASTER_ENV, "  ")
    assert master_override() is None
    monkeypatch.setenv(MASTER_ENV, "spark://10.0.0.5:7077")
    assert master_override() == "spark://10.0.0.5:7077"


@pytest.mark.parametrize("line", ["spark.master  yarn", "spark.master=yarn",
                                  "  spark.master:\tyarn  "])
def test_configured_master_reads_spark_defaults(monkeypatch, tmp_path, line):
    (tmp_path / "spark-defaults.conf").write_text(
        f"# spark.master local[3]\nspark.master.rest.enabled false\n{line}\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.delenv(MASTER_ENV, raising=False)
    assert configured_master() == "yarn"
    monkeypatch.setenv(MASTER_ENV, "local[2]")
    assert configured_master() == "local[2]"
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv(MASTER_ENV)
    assert configured_master() == "local[*]"


@pytest.mark.parametrize("master, loopback", [
    ("local[*]", True), ("spark://127.0.0.1:7077", True), ("spark://localhost:7077", True),
    ("spark://spark-master:7077", False), ("yarn", False), ("k8s://https://10.0.0.1:6443", False)])
def test_driver_binds_to_loopback_only_for_masters_on_this_machine(monkeypatch, master,
                                                                   loopback):
    monkeypatch.setenv(MASTER_ENV, master)
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    configure_environment()
    assert os.environ.get("SPARK_LOCAL_IP") == ("127.0.0.1" if loopback else None)


@pytest.mark.spark
def test_sessions_take_spark_defaults_and_the_master_override():
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", MASTER_ENV)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    default, overridden = json.loads(line.removeprefix("RESULT "))
    conf = defaults()
    assert overridden["master"] == "local[1]"
    assert default["master"] == conf["spark.master"] == "local[*]"
    for seen in (overridden, default):
        assert seen["serializer"] == conf["spark.serializer"].strip()
        assert seen["serializer"].endswith("KryoSerializer")
        assert seen["aqe"] == conf["spark.sql.adaptive.enabled"] == "true"
        assert seen["partitions"] == conf["spark.sql.shuffle.partitions"]
        # local mode: shoprecs.localfs's file system when `make install` built it
        assert (seen["file_system"] == localfs.FILE_SYSTEM) == localfs.built()

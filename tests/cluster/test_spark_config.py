"""Every entry point's session gets spark-defaults.conf through Spark's launcher, an
operator's SPARK_CONF_DIR replaces it, and SHOPRECS_SPARK_MASTER overrides the master and
nothing else. Sessions start in fresh processes: the suite's shared one would hide all of
it (getOrCreate returns it, whatever the configuration says)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from pipeline import spark as shoprecs_spark
from pipeline.spark import MASTER_ENV, REPO_ROOT, JavaMissing

SCRIPT = """
import json, os
from pipeline.spark import get_spark
spark = get_spark("shoprecs-config-check")
conf = spark.sparkContext.getConf()
print("RESULT " + json.dumps({
    "master": spark.sparkContext.master, "serializer": conf.get("spark.serializer"),
    "aqe": conf.get("spark.sql.adaptive.enabled"),
    "partitions": conf.get("spark.sql.shuffle.partitions")}))
spark.stop()
"""


def defaults() -> dict[str, str]:
    pairs = (line.split(None, 1) for line in
             (REPO_ROOT / "spark-defaults.conf").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key: value.strip() for key, value in pairs}


def session(**env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SPARK_CONF_DIR", "PYSPARK_SUBMIT_ARGS", MASTER_ENV)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env={**clean, **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.spark
def test_sessions_read_spark_defaults_and_take_the_master_override():
    conf = defaults()
    default = session()
    assert default["master"] == conf["spark.master"] == "local[*]"
    assert default["serializer"] == conf["spark.serializer"] and "Kryo" in default["serializer"]
    assert default["aqe"] == conf["spark.sql.adaptive.enabled"] == "true"
    assert default["partitions"] == conf["spark.sql.shuffle.partitions"]
    overridden = session(**{MASTER_ENV: "local[1]"})
    assert overridden == {**default, "master": "local[1]"}


@pytest.mark.spark
def test_an_operators_spark_conf_dir_replaces_the_projects_file(tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("spark.master local[1]\n"
                                                  "spark.sql.shuffle.partitions 3\n")
    seen = session(SPARK_CONF_DIR=str(tmp_path))
    assert seen["master"] == "local[1]" and seen["partitions"] == "3"
    assert seen["serializer"] is None  # the project's file was not read


def test_the_launcher_gets_the_file_unless_the_operator_configured_spark(monkeypatch):
    for name in ("SPARK_CONF_DIR", "PYSPARK_SUBMIT_ARGS"):
        monkeypatch.delenv(name, raising=False)
    shoprecs_spark.configure_environment()
    assert os.environ["PYSPARK_SUBMIT_ARGS"] == (
        f"--properties-file {REPO_ROOT / 'spark-defaults.conf'} pyspark-shell")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master yarn pyspark-shell")
    shoprecs_spark.configure_environment()
    assert os.environ["PYSPARK_SUBMIT_ARGS"] == "--master yarn pyspark-shell"


def test_a_regular_install_finds_its_copy_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(shoprecs_spark, "REPO_ROOT", tmp_path / "site-packages")
    assert shoprecs_spark.defaults_file(tmp_path) is None
    installed = tmp_path / "share" / "shoprecs" / "spark-defaults.conf"
    installed.parent.mkdir(parents=True)
    installed.write_text("spark.master local[2]\n")
    assert shoprecs_spark.defaults_file(tmp_path) == installed


@pytest.mark.slow
def test_the_wheel_carries_spark_defaults(tmp_path):
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "var", "tests", "bench", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(source)], check=True, timeout=300)
    wheel = next(tmp_path.glob("shoprecs-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    conf = next(n for n in names if n.endswith("/share/shoprecs/spark-defaults.conf"))
    assert zipfile.ZipFile(wheel).read(conf).decode() == (
        REPO_ROOT / "spark-defaults.conf").read_text()


def test_a_missing_or_old_java_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaMissing, match="set JAVA_HOME or put java on PATH"):
        shoprecs_spark.java_version(java_home="")
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    with pytest.raises(JavaMissing, match="is Java 11; Spark needs 17 or newer"):
        shoprecs_spark.java_version(java_home=str(tmp_path))
    java.write_text('#!/bin/sh\necho \'java version "1.8.0_381"\' >&2\n')
    with pytest.raises(JavaMissing, match="is Java 8"):
        shoprecs_spark.java_version(java_home=str(tmp_path))
    java.write_text('#!/bin/sh\necho \'openjdk version "21" 2023-09-19\' >&2\n')
    assert shoprecs_spark.java_version(java_home=str(tmp_path)) == 21

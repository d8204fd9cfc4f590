"""What an operator reads at 3 a.m. (core/errors.py, shoprecs/cli.py): a known failure is
one line naming what failed and which setting or command fixes it, with its exit code; the
traceback only with -v."""
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoprecs.cli import main
from shoprecs.demo import free_port, start_simulator
from tests.conftest import order

DAY = "2024-01-01"


def run(args, settings, **env):
    base = {"SHOPRECS_WAREHOUSE_ROOT": str(settings.root),
            "SHOPRECS_BUS_URL": settings.bus.url, "SHOPRECS_BUS_RETRIES": "0"}
    return CliRunner().invoke(main, args, env={**base, **env})


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_an_unreachable_bus_is_one_line_and_exit_code_4(settings):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run(["extract", "--date", DAY], settings, SHOPRECS_BUS_URL=dead)
    assert result.exit_code == 4
    assert error_line(result) == (
        f"error: the bus at {dead} is unreachable: GET /orders failed after 1 attempts "
        "(cannot connect); check bus.url and that the bus is up")
    assert "Traceback" not in result.output
    verbose = run(["-v", "extract", "--date", DAY], settings, SHOPRECS_BUS_URL=dead)
    assert verbose.exit_code == 4 and "Traceback" in verbose.output


def test_refused_credentials_name_the_settings(settings):
    bus = start_simulator([order(1, f"{DAY}T10:00:00", "79165396205", (1, 1))], [], settings)
    try:
        result = run(["extract", "--date", DAY], settings, SHOPRECS_BUS_PASSWORD="wrong")
    finally:
        bus.stop()
    assert result.exit_code == 4
    assert "refused the credentials (HTTP 401 on GET /orders): check bus.user and " \
           "SHOPRECS_BUS_PASSWORD" in error_line(result)


@pytest.mark.parametrize("env, fragment", [
    ({"SHOPRECS_BUS_ORDERS_KEY": "data"},
     "the bus's /orders answer has no 'data' list (it has: orders, page, pageCount): set "
     "bus.orders_key to the name it uses"),
    ({"SHOPRECS_BUS_DATE_FIELD": "createdAt"},
     "the bus's orders have no 'createdAt' field (they have: basket, clientTel, date, id): "
     "set bus.date_field to the name it uses"),
])
def test_a_bus_unlike_its_profile_names_the_field_and_the_setting(settings, env, fragment):
    bus = start_simulator([order(1, f"{DAY}T10:00:00", "79165396205", (1, 1))], [], settings)
    try:
        result = run(["extract", "--date", DAY], settings, **env)
    finally:
        bus.stop()
    assert result.exit_code == 5
    assert error_line(result) == f"error: {fragment}"


@pytest.mark.parametrize("env, fragment", [
    ({"SHOPRECS_BUS_PER_PAGE": "lots"},
     "bus.per_page = 'lots' (SHOPRECS_BUS_PER_PAGE): input should be a valid integer"),
    ({"SHOPRECS_BUS_ORDER_SORT": "newest"},
     "bus.order_sort = 'newest' (SHOPRECS_BUS_ORDER_SORT): input should be 'asc', 'desc' or"),
    ({"SHOPRECS_BUS_DATE_FILTER": "none", "SHOPRECS_BUS_DATE_FIELD": ""},
     "bus.date_field is empty and bus.date_filter is none: nothing tells an order's day"),
    ({"SHOPRECS_BUS_TIMEZONE": "Mars/Olympus"}, "bus.timezone 'Mars/Olympus' is not a time"),
])
def test_a_bad_configuration_value_is_exit_code_3(settings, env, fragment):
    result = run(["extract", "--date", DAY], settings, **env)
    assert result.exit_code == 3, result.output
    assert fragment in error_line(result)


def test_a_bad_configuration_file_is_exit_code_3(settings, tmp_path):
    path = tmp_path / "shoprecs.toml"
    path.write_text("[bus]\nper_page = 'ten'\n")
    result = run(["--config", str(path), "extract", "--date", DAY], settings)
    assert result.exit_code == 3
    assert error_line(result) == (
        f"error: configuration {path}: bus.per_page = 'ten' (SHOPRECS_BUS_PER_PAGE): input "
        "should be a valid integer, unable to parse string as an integer")


def test_no_landed_data_is_exit_code_6_before_spark_starts(settings):
    result = run(["clean", "--date", DAY], settings)
    assert result.exit_code == 6
    assert error_line(result) == (
        f"error: no landed orders for {DAY} at {settings.root}/landing/orders/dt={DAY}: "
        f"run `shoprecs extract --date {DAY}` first")


def test_train_before_clean_is_exit_code_6_naming_the_step(settings):
    result = run(["train", "--date", DAY], settings)
    assert result.exit_code == 6
    assert error_line(result) == (
        f"error: no clean orders at {settings.root}/clean/orders: run `shoprecs clean --from D "
        "--to D` for the days to train on first (or `shoprecs run`)")


def test_rollback_with_nothing_published_is_exit_code_9(settings):
    result = run(["rollback"], settings)
    assert result.exit_code == 9, result.output
    assert error_line(result).endswith("; serving is unchanged")


def test_mongo_without_a_uri_is_a_configuration_error(settings):
    result = run(["rollback", "--store", "mongo"], settings, SHOPRECS_MONGO_URI="")
    assert result.exit_code == 3, result.output
    assert error_line(result).startswith("error: no MongoDB URI: set mongo.uri")


def shoprecs(*args, env: dict) -> subprocess.CompletedProcess:
    """The installed command in a process of its own; TimeoutExpired past 15 s."""
    return subprocess.run([str(Path(sys.executable).parent / "shoprecs"), *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=15)


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_an_unreachable_store_or_master_is_one_line_and_exit_code_8_within_15_s(settings):
    port = free_port()  # nothing listens there
    env = {"SHOPRECS_WAREHOUSE_ROOT": str(settings.root), "SHOPRECS_PRIVACY_HMAC_KEY": "k"}
    mongo = shoprecs("rollback", "--store", "mongo", env={
        **env, "SHOPRECS_MONGO_URI": f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"})
    assert mongo.returncode == 8
    assert one_line(mongo).startswith(f"error: MongoDB at 127.0.0.1:{port} does not answer")
    master = shoprecs("attribute", "--date", DAY,
                      env={**env, "SHOPRECS_SPARK_MASTER": f"spark://127.0.0.1:{port}"})
    assert master.returncode == 8
    assert one_line(master).startswith(f"error: the Spark master spark://127.0.0.1:{port} is "
                                       "unreachable")


def test_help_lists_every_exit_code_and_warns_of_nothing(settings):
    done = shoprecs("--help", env={"SHOPRECS_PRIVACY_HMAC_KEY": ""})
    assert done.returncode == 0 and done.stderr == ""
    codes = re.findall(r"(\d) [a-zA-Z]", done.stdout.split("Exit codes:")[1])
    assert [int(c) for c in codes] == list(range(10))
    assert "development key" not in done.stdout


def test_keying_with_the_development_key_warns_once(caplog):
    from core import config

    config._warn_development_key.cache_clear()
    privacy = config.Privacy()
    with caplog.at_level(logging.WARNING):
        chains = [privacy.keys, privacy.keys, config.Privacy(hmac_key="a-secret").keys]
    assert chains[2] == ("a-secret",)
    assert [r.getMessage()[:45] for r in caplog.records] == [  # once, and for that key only
        "privacy.hmac_key is the development key, whic"]

"""`shoprecs simulator` offers what its code has: the kinds of shop, late orders and
placeholder phones, and it speaks the configured bus profile. The command's app is taken
where it would start serving and asked over Flask's test client."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from click.testing import CliRunner

from shoprecs.cli import main
from simulation import simulator

AUTH = {"Authorization": "Basic " + base64.b64encode(b"u:pw").decode()}


@pytest.fixture
def bus(monkeypatch, tmp_path):
    """Runs `shoprecs simulator ARGS` with env; returns its Flask test client."""
    started = []
    monkeypatch.setattr(simulator, "serve", lambda app, host, port: started.append(app))

    def run(*args, **env):
        result = CliRunner().invoke(main, ["simulator", *args], env={
            "SHOPRECS_WAREHOUSE_ROOT": str(tmp_path), "SHOPRECS_BUS_USER": "u",
            "SHOPRECS_BUS_PASSWORD": "pw", **env})
        assert result.exit_code == 0, result.output
        return started.pop().test_client()
    return run


def listed(client, path="/orders?page=1&per-page=1&expand=basket", key="pageCount"):
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.get_json()[key]


def test_a_profile_generates_its_kind_of_shop(bus):
    assert listed(bus("--profile", "tiny")) == 2_000  # simulation/profiles.py: tiny
    assert listed(bus("--profile", "tiny", "--orders", "500")) == 500


def test_late_orders_are_listed_only_once_their_day_has_come(bus):
    start = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    args = ("--profile", "tiny", "--start", start, "--days", "10", "--orders", "400")
    assert listed(bus(*args)) == 400
    late = listed(bus(*args, "--late", "0.5", "--late-days", "30"))  # listed in the future
    assert 120 < late < 280


def test_the_bus_profile_comes_from_the_configuration(bus):
    client = bus("--profile", "tiny", "--placeholder", "1.0", SHOPRECS_BUS_ORDERS_PATH="/v2/o",
                 SHOPRECS_BUS_PHONE_FIELD="phone", SHOPRECS_BUS_ORDERS_KEY="data")
    first = listed(client, "/v2/o?page=1&per-page=1&expand=basket", key="data")[0]
    assert first["phone"] == "+7 (123) 456-7890" and "clientTel" not in first

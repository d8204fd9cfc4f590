"""An API host installs only the serving extra: no pyspark, no Airflow, no MLflow, no JVM, and
`shoprecs serve` answers from a published warehouse."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from engine import publish
from shoprecs.demo import free_port
from tests.conftest import TEST_KEY, write_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_the_serve_extra_alone_runs_the_api(tmp_path):
    source = tmp_path / "src"  # a regular install from a copy leaves the checkout clean
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "var", "tests", "bench", "build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, f"{source}[serve]"], check=True, timeout=900)
    python = str(venv / "bin" / "python")
    for absent in ("pyspark", "airflow", "pandas", "mlflow"):
        probe = subprocess.run([python, "-c", f"import {absent}"], capture_output=True)
        assert probe.returncode != 0, f"{absent} was installed with the serve extra"

    warehouse = tmp_path / "warehouse"
    write_model(warehouse, "v1")
    publish(warehouse, "v1")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPRECS_")}
    env.update(SHOPRECS_WAREHOUSE_ROOT=str(warehouse), SHOPRECS_PRIVACY_HMAC_KEY=TEST_KEY)
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "shoprecs"), "serve", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "serve.log").read_text()[-3000:])
        resp = requests.get(f"{base}/users/79165396205/recommendations?limit=1")
        assert resp.json() == [{"goodsId": 101, "rating": 0.9, "name": "Saucer", "price": 2.25}]
        assert requests.get(f"{base}/openapi.json").json()["openapi"] == "3.1.0"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0

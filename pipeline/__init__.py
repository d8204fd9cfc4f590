"""The nightly pipeline: the night declared once (night.py) and run by `shoprecs run` and
by the Airflow DAG alike, its units of work (steps.py), publishing into MongoDB
(mongo.py), the Spark session its steps share (spark.py, blas.py), and the alerts of a
failed night (alerts.py)."""
from pipeline.night import NIGHT, Night, Skipped, Step, run
from pipeline.steps import (
    attribute,
    catalog,
    clean,
    extract,
    gate,
    landed_range,
    privacy,
    publish,
    publish_newest,
    publish_version,
    reload_service,
    train,
    tune,
)

__all__ = ["NIGHT", "Night", "Skipped", "Step", "attribute", "catalog", "clean", "extract",
           "gate", "landed_range", "privacy", "publish", "publish_newest", "publish_version",
           "reload_service", "run", "train", "tune"]

"""The models (ALS, FP-Growth, item kNN, the hybrid, name neighbours, popularity), the
persisted id mapping, the nightly training job, their evaluation on the holdout, the
choice of what is published and the quality gate, the tune, the model's report and its
tracked runs (MLflow)."""

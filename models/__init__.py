"""ALS and FP-Growth training, the persisted id mapping, evaluation."""

"""A/B tests: which arm a shopper is in (arms.py, read by the service on every request) and
the nightly attribution of impressions, clicks and orders per arm (attribution.py, Spark)."""

"""Extraction from the order bus, the bus simulator and its data, and Spark cleaning."""

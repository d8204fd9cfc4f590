"""Getting the shop's data in: extraction from the order bus (bus.py) into landing/, and
the Spark cleaning job (clean.py) into clean/ and quarantine/. Imports neither the serving
engine nor the simulation (import contracts in `make lint`)."""

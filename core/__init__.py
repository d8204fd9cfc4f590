"""The bottom layer: configuration, errors an operator acts on, phone numbers and their
keys, the bus profile, files written whole and locked (files.py), the run lock
(locks.py), and which store serves (stores.py).

Imports nothing else of the project (an import contract in `make lint` checks it), so
every other package may use it.
"""

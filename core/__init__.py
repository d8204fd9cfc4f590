"""The bottom layer: configuration, phone numbers and the keys derived from them.

Imports nothing else of the project (an import contract in `make lint` checks it), so
every other package may use it.
"""

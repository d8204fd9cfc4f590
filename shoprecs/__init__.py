"""The `shoprecs` command line (cli.py: every step of the night, serving, privacy jobs,
the simulator) and `shoprecs demo` (demo.py): the top layer, which may import any other."""

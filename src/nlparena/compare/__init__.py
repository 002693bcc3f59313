"""`nlparena compare`: several runs of the same data, each in its own process, turned into one report.

config.py reads a compare config; worker.py is one run's process (fit, then test); runner.py checks, runs and
skips runs; report.py turns their event files into report.md, results.csv and figures.
"""

"""Benchmarks: ratios measured side by side in one run (ours vs a baseline on the same inputs).

Run them all from the repository root with `python -m bench` (CPU, a few minutes at most). They are not
timed tests: they print numbers for a person to read, and assert nothing about speed.
"""

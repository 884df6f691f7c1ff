"""The benchmark harness behind `python bench/run.py` (see bench/README.md)."""

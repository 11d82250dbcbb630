"""Benchmarks of vae-cli: not part of the installed package (the wheel ships vae_cli only).

Each script runs from a checkout as `python benchmarks/<script>.py`; benchmarks/README.md lists
them. measure.py is how every one of them times a process and reads its peak memory.
"""

"""Fault injection: real cuefast processes under load, faults injected, invariants checked.

``tests/chaos/test_chaos.py`` is the short run inside ``./dev test`` (marker ``chaos``);
``./dev chaos --cycles N [--seed S]`` (``python -m tests.chaos``) is the long one. See
``harness.py`` for what runs, ``plan.py`` for the profiles and the fault schedule, and
``invariants.py`` for what is checked.
"""

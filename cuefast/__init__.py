"""cuefast: a Redis-native, high-throughput scheduler for fleets of AI agents.

It speaks the CueAPI wire format. This package holds the server (``cuefast serve``),
and — as they land — the SDK client, the worker daemon and the CLI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

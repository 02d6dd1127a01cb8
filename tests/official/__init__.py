"""The official CueAPI clients (PyPI cueapi-sdk, cueapi-worker, cueapi CLI) against cuefast, unchanged."""

"""The HTTP API (Litestar): the only package that knows HTTP."""

from cuefast.api.app import create_app

__all__ = ["create_app"]

"""The base of the SDK's response models: a msgspec Struct with ``to_dict``."""

from __future__ import annotations

from typing import Any

import msgspec


class Model(msgspec.Struct, kw_only=True):
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

"""``CuePayload``: a builder for the conventional agent payload keys (as in the CueAPI SDK)."""

from __future__ import annotations

from typing import Any


class CuePayload:
    """``CuePayload().task("brief").agent("socrates").build()`` → ``{"task": …, "agent": …}``.

    ``task`` routes worker executions to handlers; ``agent`` filters claims (cuefast).
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def _set(self, key: str, value: Any) -> CuePayload:
        self._data[key] = value
        return self

    def task(self, name: str) -> CuePayload:
        return self._set("task", name)

    def kind(self, kind: str) -> CuePayload:
        return self._set("kind", kind)

    def instruction(self, text: str) -> CuePayload:
        return self._set("instruction", text)

    def context_ref(self, ref: str) -> CuePayload:
        return self._set("context_ref", ref)

    def context_mode(self, mode: str) -> CuePayload:
        return self._set("context_mode", mode)

    def agent(self, name: str) -> CuePayload:
        return self._set("agent", name)

    def extra(self, key: str, value: Any) -> CuePayload:
        return self._set(key, value)

    def build(self) -> dict[str, Any]:
        return dict(self._data)

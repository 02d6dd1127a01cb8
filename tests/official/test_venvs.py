"""The venv builder fails loudly, with pip's own output, and never leaves a venv marked complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.official.venvs import VenvError, ensure_venv, venv_path

pytestmark = [pytest.mark.official, pytest.mark.slow]


def test_failed_install_raises_with_pip_output_and_is_retried(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-package-1.0-py3-none-any.whl")  # a local path: no registry lookup
    with pytest.raises(VenvError) as info:
        ensure_venv("broken", (missing,), root=tmp_path)
    assert "pip install" in str(info.value) and "no-such-package" in str(info.value)
    path = venv_path("broken", (missing,), root=tmp_path)
    assert not (path / ".complete").exists()  # the next run rebuilds it


def test_pins_decide_the_venv() -> None:
    assert venv_path("sdk", ("a==1", "b==2")) == venv_path("sdk", ("b==2", "a==1"))
    assert venv_path("sdk", ("a==1",)) != venv_path("sdk", ("a==2",))

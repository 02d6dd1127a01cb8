"""The dashboard in a real headless Chromium (pytest -m browser)."""

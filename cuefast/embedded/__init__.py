"""Embedded Valkey and PostgreSQL from PyPI wheels: the default when no servers are given."""

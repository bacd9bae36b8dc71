"""Integrations with frameworks; each submodule imports only what it needs."""

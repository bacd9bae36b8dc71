"""Optional integrations, each behind its own extra: ``asgi`` (FastAPI/Starlette lifespan),
``otel`` (OpenTelemetry) and ``prometheus``; each submodule imports only what it needs."""

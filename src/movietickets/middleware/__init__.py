"""ASGI middleware, one per module. None of it knows a feature of the service."""

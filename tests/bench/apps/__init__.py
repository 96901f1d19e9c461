"""Reference apps for the floor of the request path: a bare ASGI app and plain FastAPI."""

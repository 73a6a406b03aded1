"""hopkit.serving: a thread-safe batched ``Recommender`` (no web dependency)
and, with the ``serve`` extra, the ASGI service ``create_app`` / ``hopkit
serve`` (docs/serving.md)."""

from .core import Recommender, Request, RequestError


def create_app(*args, **kwargs):
    """The Starlette app (needs the ``serve`` extra); see ``app.create_app``."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["Recommender", "Request", "RequestError", "create_app"]

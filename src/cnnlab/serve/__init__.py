"""Serve a trained model over HTTP: a JSON API and a web page (FastAPI on uvicorn).

`create_app(...)` builds the app (for tests and embedding); `cnnlab serve RUN` runs it. Names load
on first use (PEP 562), so `import cnnlab` does not load FastAPI or torch.
"""

from importlib import import_module

__all__ = ["ServeSettings", "create_app", "run_server"]


def __getattr__(name: str):
    if name == "ServeSettings":
        from .settings import ServeSettings

        return ServeSettings
    if name in __all__:
        return getattr(import_module(".app", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

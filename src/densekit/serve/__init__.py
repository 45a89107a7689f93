"""Serve searchers over HTTP (FastAPI + uvicorn, ``densekit[serve]``) with a page to look at
results: ``create_app(searchers)`` builds the app; ``densekit serve`` runs it."""

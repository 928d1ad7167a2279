"""The web layer: thin FastAPI routers over the store and the engine."""

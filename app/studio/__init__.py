"""The CAM studio: what one image request asks of a loaded model (maps, metrics), FastAPI-free."""

"""The engine: torch-only code (capture, layers, devices, methods). It never imports the web layer."""

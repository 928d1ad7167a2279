"""Architectures of the real, pretrained models that Fovea has bundled cards for (their weights ship in
Python packages; see model_store/)."""

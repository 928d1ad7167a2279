"""The atlas: what an index build records about every unit of a model on one dataset, and its reader."""

"""Fovea: see what the neurons and features of convolutional networks respond to."""

__version__ = "0.1.0"

"""The embedded demo: a procedural shapes dataset with concept masks, and two small models trained on it."""

"""Uploaded images: decoding by content under size limits, and a content-addressed store that survives
restarts."""

"""Held-out search evaluation data (loader below)."""

"""Destinations: where validated, encrypted contact records are written."""

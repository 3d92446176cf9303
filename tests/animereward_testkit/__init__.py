"""Harness for running this pack inside a real ComfyUI: in-process executor, HTTP server, tiny models.

Kept under tests/ (never loaded as part of the pack). The demo reuses it.
"""

# Developer entry points. Each target does its own set-up first (dev/setup.sh is idempotent and fast when
# nothing changed). COMFYUI_DIR=/path/to/ComfyUI uses your own ComfyUI instead of the bundled 0.3.75.
PY := .venv/bin/python

.PHONY: setup demo test lint bench clean

setup:
	bash dev/setup.sh

demo: setup
	$(PY) dev/demo.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench

clean:
	rm -rf .venv .comfyui .cache out .pytest_cache .ruff_cache

"""ComfyUI adapters (V3 API): the only layer that imports ComfyUI."""

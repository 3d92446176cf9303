"""What differs between ComfyUI 0.3.75 (CI) and current releases, in one place.

- `CoreModelPatcher` is new (current); 0.3.75 only has `ModelPatcher`, which takes the same arguments.
- `InterruptProcessingException` derives from BaseException on current releases, from Exception on 0.3.75:
  the nodes catch only ValueError/FileNotFoundError (errors.from_library), so Cancel always propagates.
"""

from __future__ import annotations

from typing import Any

import torch


def make_model_patcher(module: torch.nn.Module) -> Any:
    """Wrap a module so ComfyUI's model management can load, count and offload it."""
    import comfy.model_management as mm
    import comfy.model_patcher as mp

    cls = getattr(mp, "CoreModelPatcher", mp.ModelPatcher)
    return cls(module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()

"""A ComfyUI MODEL as the GAPO core's Denoiser (gapo_trainer.protocols), through ComfyUI's own machinery.

- Sigma, noise and target come from the model's own `model_sampling` (after object patches such as a shift
  node's): sigma is drawn as ComfyUI's TrainLoraNode draws it, `percent_to_sigma(uniform)` (flow shift
  included); `noise_scaling` makes x_t; the target is the model output that makes `calculate_denoised` return
  the clean latent, i.e. the native space of DESIGN §2 (eps: the noise; v: the v-target; flow: noise − x0).
- Predictions take the sampler's own path, as TrainSampler's do: training runs *inside* a `CFGGuider.sample`
  call with a sampler whose `sample()` is the training loop. Every group's stored conditioning goes through
  `process_conds` once (areas, timestep ranges, the model's `extra_conds`: image-to-video concat latents and
  masks, CLIP-vision features, model-specific extras), and each prediction is the guider's own call with that
  group's processed entries, at cfg 1. The only change: `calculate_denoised` returns the raw model output
  during the run, so the loss sees the native prediction without dividing by sigma.
- Latents: the store keeps what KSampler outputs; the model works on `process_latent_in` of it (Wan's
  per-channel normalisation), applied here in `add_noise`/`target` exactly as the sampler applies it.
- Noise masks (Wan 2.2 TI2V and LTXV image-to-video keep the start frame's latent with a LATENT noise_mask):
  a masked group's mask reaches the model's `extra_conds` as the sampler's `denoise_mask` (Wan 2.2 and LTXV
  turn it into per-frame timesteps), and `predict` does what ComfyUI's `KSamplerX0Inpaint` does around the
  model call: the kept elements enter as `scale_latent_inpaint` of the kept latent, and the denoised output
  there is the kept latent itself. The prediction is returned in the native space relative to the noisy
  input, so the kept elements' error against the target is zero: only what the sampler denoised is learnt.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

log = logging.getLogger("AnimeReward")
T = TypeVar("T")

# Marker put into each conditioning entry's dict so the processed entries can be found per group.
GROUP_TAG = "animereward_group"
# Percentiles are kept off the ends: percent 0 maps to sigma_max (1e9 for discrete eps models).
PERCENT_RANGE = (1e-3, 1.0 - 1e-3)
# What autograd says when a forward changed in place a tensor it had saved for backward.
INPLACE_ERROR = "modified by an inplace operation"


class UnsupportedModelError(ValueError):
    """The MODEL's parameterisation has no noise/velocity target GAPO can train against."""


def model_type_name(patcher: Any) -> str:
    mt = getattr(patcher.model, "model_type", None)
    return getattr(mt, "name", str(mt))


def prediction_type_of(patcher: Any) -> str:
    """'eps', 'v' or 'flow' for the MODEL's (possibly patched) model_sampling; refuses the others by name.

    ComfyUI's model types map as: EPS, STABLE_CASCADE → eps; V_PREDICTION, V_PREDICTION_EDM,
    V_PREDICTION_CONTINUOUS, EDM → v; FLOW, FLUX, FLOW_COSMOS → flow; IMG_TO_IMG (and any X0 model) is
    refused: it predicts the clean latent itself, so there is no denoising target in a noise space."""
    import comfy.model_sampling as ms_mod

    ms = patcher.get_model_object("model_sampling")
    name = f"{model_type_name(patcher)} ({type(patcher.model).__name__})"
    if isinstance(ms, ms_mod.X0):
        raise UnsupportedModelError(
            f"model type {name} predicts the clean latent (x0) directly; GAPO needs a model that predicts "
            "noise, v or flow velocity (Wan, HunyuanVideo, LTX-Video, SD-style models)"
        )
    if not hasattr(ms, "percent_to_sigma"):
        raise UnsupportedModelError(f"model type {name}: its model_sampling has no percent_to_sigma to draw sigmas from")
    if isinstance(ms, ms_mod.CONST | ms_mod.COSMOS_RFLOW):
        return "flow"
    if isinstance(ms, ms_mod.V_PREDICTION):  # EDM derives from V_PREDICTION (its output is −v)
        return "v"
    if isinstance(ms, ms_mod.EPS):
        return "eps"
    raise UnsupportedModelError(f"model type {name}: unknown parameterisation {type(ms).__mro__[1:3]}")


def check_trainable(patcher: Any) -> str:
    """The prediction type ('eps', 'v', 'flow') of a MODEL this trainer can train, or UnsupportedModelError
    naming its model type and class: image, audio and 3-D models (latents without a time axis: the datasets
    hold video latents) and models without a denoising target (prediction_type_of)."""
    fmt = patcher.model.latent_format
    dims = getattr(fmt, "latent_dimensions", 2)
    if dims != 3:
        raise UnsupportedModelError(
            f"model type {model_type_name(patcher)} ({type(patcher.model).__name__}) has latents of {dims} dimensions "
            "per sample, no time axis (an image, audio or 3-D model, or SVD with its frames in the batch); this "
            "trainer trains video models whose latents have one (Wan, HunyuanVideo, LTX-Video, Mochi, Cosmos)")
    return prediction_type_of(patcher)


def training_clone(model: Any) -> Any:
    """A patcher clone that training may add its LoRA injection to and load as a regular (non-streamed) model.

    Current ComfyUI on NVIDIA builds `ModelPatcherDynamic`, whose weights live outside the module until used;
    `clone(disable_dynamic=True)` gives a regular patcher over a regular copy. 0.3.75 has neither: a plain
    clone shares the module, and the injection applies only while this clone is loaded."""
    is_dynamic = getattr(model, "is_dynamic", None)
    clone = model.clone(disable_dynamic=True) if callable(is_dynamic) and is_dynamic() else model.clone()
    # Base weights never train: no gradients for them (fp8 weights cannot even hold one).
    clone.model.requires_grad_(False)
    normalise_inference_tensors(clone.model)
    return clone


def normalise_inference_tensors(module: torch.nn.Module) -> int:
    """Replace parameters and buffers made under inference mode (a loader that ran inside the executor) by
    normal copies with the same values, one tensor at a time: backward must save weights (a linear layer's
    input gradient needs its weight), and autograd refuses to save inference tensors. The module is shared
    with the artist's MODEL, which computes exactly as before. Returns how many tensors were replaced."""
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for m in module.modules():
            for name, p in list(m._parameters.items()):
                if p is not None and p.is_inference():
                    m._parameters[name] = torch.nn.Parameter(p.clone(), requires_grad=False)
                    replaced += 1
            for name, b in list(m._buffers.items()):
                if b is not None and b.is_inference():
                    m._buffers[name] = b.clone()
                    replaced += 1
    return replaced


def clone_tree(value: Any) -> Any:
    """Deep copy of a conditioning value with every tensor cloned: tensors made under the executor's
    inference mode cannot be saved for backward. Objects (e.g. CLIP-vision outputs) are shallow-copied
    and their attributes cloned the same way."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: clone_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_tree(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone_tree(v) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value):
        out = copy.copy(value)
        for k, v in vars(value).items():
            if isinstance(v, torch.Tensor | dict | list | tuple):
                setattr(out, k, clone_tree(v))
        return out
    return value


def _raw_output(sigma: torch.Tensor, model_output: torch.Tensor, model_input: torch.Tensor) -> torch.Tensor:
    return model_output


def block_modules(diffusion_model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (children of top-level ModuleLists): the checkpointing unit."""
    return [m for child in diffusion_model.children() if isinstance(child, torch.nn.ModuleList) for m in child]


@contextmanager
def gradient_checkpointing(modules: Sequence[torch.nn.Module], in_place_blocks: bool = False) -> Iterator[None]:
    """Recompute each block's activations in backward (non-reentrant: inputs that need no grad still give
    the LoRA its gradients). The modules are shared with the artist's MODEL: always restored.

    in_place_blocks: the blocks change tensors in place that backward needs (see run_training). Non-reentrant
    checkpointing would recompute from inputs the block changed, and keep recomputed tensors that later ops
    change; these blocks are checkpointed the reentrant way instead, on copies of their inputs and with every
    tensor saved during the recomputation copied."""
    import torch.utils.checkpoint

    patched: list[tuple[torch.nn.Module, Any]] = []
    try:
        for m in modules:
            forward = m.forward
            own = vars(m).get("forward")  # an instance-level forward someone else set, kept as it was

            def checkpointed(*args: Any, _f: Callable = forward, **kwargs: Any) -> Any:
                if not torch.is_grad_enabled():
                    return _f(*args, **kwargs)
                if in_place_blocks:
                    return _reentrant_on_copies(_f, args, kwargs)
                return torch.utils.checkpoint.checkpoint(_f, *args, use_reentrant=False, **kwargs)

            m.forward = checkpointed
            patched.append((m, own))
        yield
    finally:
        for m, own in patched:
            if own is None:
                del m.forward  # back to the class's forward
            else:
                m.forward = own


def _reentrant_on_copies(f: Callable, args: tuple, kwargs: dict) -> Any:
    """Reentrant checkpoint of f(*args, **kwargs) for blocks that change tensors in place: every tensor
    argument (keyword ones too) is a checkpoint input, so gradients reach earlier blocks through all of them;
    the block runs on copies of them, under saved-tensor copies; an anchor that requires grad makes the outputs
    require grad even when no input does (the LoRA's parameters are inside the block, not inputs)."""
    import torch.utils.checkpoint

    names = list(kwargs)
    flat = [*args, *(kwargs[k] for k in names)]
    slots = [i for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]

    def run(_anchor: torch.Tensor, *tensors: torch.Tensor) -> Any:
        values = list(flat)
        for i, t in zip(slots, tensors, strict=True):
            values[i] = t.clone()
        with _saved_tensor_copies(True):
            return f(*values[: len(args)], **dict(zip(names, values[len(args):], strict=True)))

    anchor = torch.empty(0, requires_grad=True)
    return torch.utils.checkpoint.checkpoint(run, anchor, *(flat[i] for i in slots), use_reentrant=True)


def training_memory_bytes(patcher: Any, latent_shape: Sequence[int], batch: int, checkpointing: bool,
                          trainable_params: int) -> int:
    """Working memory to ask of model management beside the weights: activations kept for backward plus the
    LoRA's parameter, gradient and two Adam moments (float32). ComfyUI's own `memory_required` estimates one
    inference forward; backward keeps each block's activations: about twice that peak with block
    checkpointing (the block inputs plus one block recomputed), plus about a quarter of it per block without."""
    forward = int(patcher.model.memory_required([batch, *latent_shape]))
    n_blocks = max(1, len(block_modules(patcher.model.diffusion_model)))
    factor = 2.0 if checkpointing else 2.0 + n_blocks / 4
    return int(forward * factor) + 16 * trainable_params


class ComfyDenoiser:
    """The Denoiser protocol on a ComfyUI MODEL patcher (the training clone, LoRA already attached).

    `conds` maps a key (a group id) to that group's positive CONDITIONING (ComfyUI's list of
    [tensor, dict]); `predict(x_t, t, key)` replays it. Predictions are available only inside `run(body)`,
    which holds the sampler machinery open while `body(self)` trains."""

    def __init__(self, patcher: Any, conds: Mapping[str, list], latent_shape: Sequence[int], *,
                 batch: int = 2, gradient_checkpointing: bool = False,
                 noise_masks: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        """noise_masks: group key → (the 0/1 mask as the sampler applied it, [1, C, T, H, W]; the latent it
        kept, as stored [C, T, H, W]) for groups sampled from a LATENT with a noise_mask."""
        import comfy.model_management as mm

        self.patcher = patcher
        self.noise_masks = dict(noise_masks or {})
        # Copy every tensor autograd saves in the trained forward (see run_training); off unless needed.
        self.copy_saved_tensors = False
        self._inpaint: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._sigmas: torch.Tensor | None = None
        self.conds = dict(conds)
        self.latent_shape = list(latent_shape)
        self.batch = batch
        self.checkpointing = gradient_checkpointing
        self.device = mm.get_torch_device()
        self._prediction_type = prediction_type_of(patcher)
        self._model_sampling = patcher.get_model_object("model_sampling")
        self._wrap: Any = None
        self._extra_args: dict[str, Any] = {}
        self._entries: dict[str, list] = {}

    # ---- the protocol -------------------------------------------------------------------------------
    @property
    def prediction_type(self) -> str:
        return self._prediction_type

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = PERCENT_RANGE
        percents = lo + (hi - lo) * torch.rand(n, generator=generator)
        ms = self._model_sampling
        return torch.tensor([float(ms.percent_to_sigma(p)) for p in percents.tolist()],
                            dtype=torch.float32, device=self.device)

    def to_model_space(self, latents: torch.Tensor) -> torch.Tensor:
        """Stored (KSampler output) latents → the space the model denoises in, as the sampler converts them."""
        x = _usable(latents).to(self.device, torch.float32)
        return self.patcher.model.process_latent_in(x)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = self.to_model_space(x0)
        return self._model_sampling.noise_scaling(self._sigma(t), _usable(noise).to(x0), x0, False)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = self.to_model_space(x0)
        noise = _usable(noise).to(x0)
        if self._prediction_type == "eps":
            return noise
        if self._prediction_type == "flow":
            return noise - x0
        import comfy.model_sampling as ms_mod

        ms = self._model_sampling
        s = self._sigma(t).reshape(-1, *([1] * (x0.ndim - 1)))
        sd = float(ms.sigma_data)
        v = (noise * sd**2 - x0 * s) / (sd * torch.sqrt(s**2 + sd**2))
        return -v if isinstance(ms, ms_mod.EDM) else v

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
        if self._wrap is None:
            raise RuntimeError("ComfyDenoiser.predict is only available inside ComfyDenoiser.run(body)")
        entries = self._entries.get(cond)  # type: ignore[arg-type]
        if entries is None:
            raise KeyError(f"no conditioning registered for {cond!r}")
        self._wrap.conds["positive"] = entries
        inpaint = self._inpaint.get(cond)  # type: ignore[arg-type]
        with _saved_tensor_copies(self.copy_saved_tensors and torch.is_grad_enabled()):
            if inpaint is not None:
                return self._predict_masked(x_t.to(self.device), self._sigma(t), *inpaint)
            return self._wrap(x_t.to(self.device), self._sigma(t), **self._extra_args)

    def _predict_masked(self, x: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor,
                        kept: torch.Tensor) -> torch.Tensor:
        """ComfyUI's KSamplerX0Inpaint around the model call, in the native space relative to `x`."""
        ms = self._model_sampling
        options = self._extra_args.get("model_options", {})
        if "denoise_mask_function" in options:  # e.g. Differential Diffusion, as the sampler applies it
            mask = options["denoise_mask_function"](sigma, mask, extra_options={"model": self._wrap,
                                                                                "sigmas": self._sigmas})
        kept = kept.expand_as(x).to(x)
        # x is noise_scaling(sigma, noise, x0) and x0 equals `kept` where the mask keeps it: the noise there
        zeros, ones = torch.zeros_like(x), torch.ones_like(x)
        base = ms.noise_scaling(sigma, zeros, kept)
        noise = (x - base) / (ms.noise_scaling(sigma, ones, kept) - base)
        x_in = x * mask + self.patcher.model.scale_latent_inpaint(x=x, sigma=sigma, noise=noise,
                                                                   latent_image=kept) * (1.0 - mask)
        raw = self._wrap(x_in, sigma, **self._extra_args)
        # calculate_denoised is affine in the output: denoised = offset(input) + slope · output
        denoised_of = functools.partial(type(ms).calculate_denoised, ms, sigma)
        slope = denoised_of(ones, zeros) - denoised_of(zeros, zeros)
        # the sampler's denoised is calc(raw, x_in)·m + kept·(1−m); as a native output relative to x:
        shift = (denoised_of(zeros, x_in) - denoised_of(zeros, x)) * mask + (kept - denoised_of(zeros, x)) * (1.0 - mask)
        return raw * mask + shift / slope

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """gapo_trainer.protocols.SupportsGradientCheckpointing: applies from the next `run()` (the blocks are
        patched for the duration of a run only, since they are shared with the artist's MODEL)."""
        if self._wrap is not None and enabled != self.checkpointing:
            raise RuntimeError("set gradient checkpointing before ComfyDenoiser.run(), not during it")
        self.checkpointing = bool(enabled)

    # ---- the sampler session ------------------------------------------------------------------------
    def run(self, body: Callable[[ComfyDenoiser], T], trainable_params: int = 0) -> T:
        """Load the model through model management (other models offloaded as the training estimate needs),
        then run `body(self)` inside the guider's sample call; returns what body returns."""
        import comfy.model_management as mm
        import comfy.samplers

        with torch.inference_mode(False), torch.enable_grad():
            entries = []
            self._inpaint = {}
            for key, (mask, kept) in self.noise_masks.items():
                kept_in = self.to_model_space(_usable(kept)[None])
                self._inpaint[key] = (_usable(mask).to(self.device, torch.float32), kept_in)
            for key, cond in self.conds.items():
                for tensor, options in cond:
                    opts = clone_tree(dict(options))
                    opts[GROUP_TAG] = key
                    if key in self._inpaint:  # what the sampler's process_conds passes every cond
                        opts.setdefault("denoise_mask", self._inpaint[key][0])
                    entries.append([clone_tree(tensor), opts])
            guider = comfy.samplers.CFGGuider(self.patcher)
            guider.inner_set_conds({"positive": entries})
            guider.set_cfg(1.0)
            sampler = _body_sampler_class()(self, body)
            shape = [self.batch, *self.latent_shape]
            zeros = torch.zeros(shape)
            ms = self._model_sampling
            sigmas = torch.tensor([float(ms.sigma_max), 0.0])
            self._sigmas = sigmas
            need = training_memory_bytes(self.patcher, self.latent_shape, self.batch, self.checkpointing,
                                         trainable_params)
            mm.load_models_gpu([self.patcher], memory_required=need, minimum_memory_required=need)
            blocks = block_modules(self.patcher.model.diffusion_model) if self.checkpointing else []
            with gradient_checkpointing(blocks, in_place_blocks=self.copy_saved_tensors):
                guider.sample(zeros, zeros, sampler, sigmas, seed=0)
            return sampler.result  # type: ignore[return-value]

    def _enter(self, model_wrap: Any, extra_args: dict[str, Any]) -> None:
        self._entries = {}
        for entry in model_wrap.conds.get("positive", []):
            self._entries.setdefault(entry[GROUP_TAG], []).append(entry)
        missing = set(self.conds) - set(self._entries)
        if missing:
            raise RuntimeError(f"conditioning of {sorted(missing)[:3]} was dropped by the sampler's processing")
        self._wrap, self._extra_args = model_wrap, extra_args
        # Raw output instead of the denoised latent; an instance attribute, removed on exit.
        model_wrap.inner_model.model_sampling.calculate_denoised = _raw_output

    def _exit(self, model_wrap: Any) -> None:
        ms = model_wrap.inner_model.model_sampling
        if "calculate_denoised" in vars(ms):
            del ms.calculate_denoised
        self._wrap, self._extra_args, self._entries = None, {}, {}

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return _usable(t).to(self.device, torch.float32).reshape(-1)


def run_training(denoiser: ComfyDenoiser, body: Callable[[ComfyDenoiser], T], trainable_params: int,
                 steps_done: Callable[[], int]) -> T:
    """`denoiser.run(body)`, and once more with saved tensors copied if the model's own forward changes in place
    a tensor autograd saved for backward before any step finished. ComfyUI 0.3.75's HunyuanVideo (Flux's
    `img += …` blocks) and LTX-Video (`x.addcmul_(…)`) do; autograd then refuses the first backward. Nothing
    changed by then (the optimizer has not stepped), so the run starts again: with every saved tensor copied
    when saved (correct gradients; the copies replace what autograd would keep, about the same memory), and
    block checkpointing, when on, the reentrant way on copies (gradient_checkpointing)."""
    try:
        return _first_step_named(denoiser, body, trainable_params, steps_done)
    except _InPlace:
        pass
    log.warning("GAPO trainer: %s changes tensors in place that backward needs; training with copies of them",
                type(denoiser.patcher.model.diffusion_model).__name__)
    denoiser.copy_saved_tensors = True
    return _first_step_named(denoiser, body, trainable_params, steps_done)


class _InPlace(Exception):
    pass


# What a model's first training step can fail with, besides the trainer's own errors: an operation the model's
# code does that training cannot (autograd, shapes of a conditioning it expects, out of memory).
_STEP_ERRORS = (RuntimeError, TypeError, KeyError, AttributeError, IndexError, NotImplementedError)


def _first_step_named(denoiser: ComfyDenoiser, body: Callable[[ComfyDenoiser], T], trainable_params: int,
                      steps_done: Callable[[], int]) -> T:
    """denoiser.run(body); a failure before the first step finished names the model (nothing changed yet)."""
    try:
        return denoiser.run(body, trainable_params)
    except _STEP_ERRORS as e:
        if steps_done():
            raise
        if INPLACE_ERROR in str(e) and not denoiser.copy_saved_tensors:
            raise _InPlace() from e
        name = f"{model_type_name(denoiser.patcher)} ({type(denoiser.patcher.model).__name__})"
        raise UnsupportedModelError(f"model type {name}: the first training step failed, before any weight changed "
                                    f"(nothing was written): {type(e).__name__}: {e}") from e


def _copy_saved(t: torch.Tensor) -> torch.Tensor:
    return t.clone()


def _unpack_saved(t: torch.Tensor) -> torch.Tensor:
    return t


@contextmanager
def _saved_tensor_copies(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with torch.autograd.graph.saved_tensors_hooks(_copy_saved, _unpack_saved):
        yield


def _usable(t: torch.Tensor) -> torch.Tensor:
    """Tensors made under inference mode cannot enter autograd: clone them (outside inference mode)."""
    if t.is_inference():
        with torch.inference_mode(False):
            return t.clone()
    return t


@functools.cache
def _body_sampler_class() -> type:
    """A comfy.samplers.Sampler whose sample() runs the training body with the live guider (built on first
    use: comfy.samplers is imported only when training starts)."""
    import comfy.samplers

    class BodySampler(comfy.samplers.Sampler):
        def __init__(self, owner: ComfyDenoiser, body: Callable[[ComfyDenoiser], Any]) -> None:
            self.owner, self.body, self.result = owner, body, None

        def sample(self, model_wrap: Any, sigmas: Any, extra_args: dict, callback: Any, noise: torch.Tensor,
                   latent_image: torch.Tensor | None = None, denoise_mask: Any = None,
                   disable_pbar: bool = False) -> torch.Tensor:
            self.owner._enter(model_wrap, extra_args)
            try:
                self.result = self.body(self.owner)
            finally:
                self.owner._exit(model_wrap)
            return torch.zeros_like(noise)

    return BodySampler

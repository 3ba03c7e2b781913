"""The model's own training objective: latents, text conditioning, noising and the target.

The noise objective follows the scheduler config the model ships with: ``FlowMatch*``
schedulers train flow matching (x_t = (1 - s) x0 + s n, target n - x0); the others train on
their beta schedule with ``prediction_type`` ``epsilon``, ``v_prediction`` or ``sample``.
Text is encoded by the pipeline's own ``encode_prompt``, so training sees the prompt
exactly as generation does. VAE and text encoders are frozen, so both are computed once.

FLUX.1 (``FluxPipeline``) trains rectified flow as its pipeline samples it: latents stay
(B, C, H, W) for noising, :func:`denoise` packs them into 2x2 tokens with the pipeline's
``_pack_latents`` / ``_prepare_latent_image_ids``, passes ``timestep = sigma`` (the
transformer multiplies it by 1000) and the guidance scale when the transformer embeds it,
and unpacks the prediction, so the target is ``noise - x0`` in the latent layout.
Image size, T5 length and guidance come from the model profile's ``generation`` keys,
else from ``FluxPipeline.__call__``'s defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from safetext.errors import FinetuneError
from safetext.inject.sites import denoiser_of

LatentEncoder = Callable[[Any, torch.Tensor], torch.Tensor]
ENCODE_CHUNK = 16  # images per VAE / text-encoder call while pre-computing
FLUX_TIME_SCALE = 1000.0  # FluxPipeline passes timestep / 1000 (= sigma); the transformer scales it back
FLUX_PACK = 2  # FLUX tokens are 2x2 latent patches


def is_flux(pipe: Any) -> bool:
    """Whether ``pipe`` is a text-to-image ``FluxPipeline`` (its variants take other inputs)."""
    from diffusers import FluxPipeline

    return isinstance(pipe, FluxPipeline) and type(pipe).__name__ == "FluxPipeline"


def generation_default(pipe: Any, key: str) -> Any:
    """The model profile's ``generation[key]``, else the default of the pipeline's ``__call__`` (None if neither)."""
    import inspect

    from safetext.pipelines.profile import profile_of

    profile = profile_of(pipe)
    if profile is not None and profile.generation.get(key) is not None:
        return profile.generation[key]
    parameter = inspect.signature(type(pipe).__call__).parameters.get(key)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


SUPPORTED = "Stable Diffusion 1.x/2.x, SDXL, SD3 and FLUX.1"


def check_supported(pipe: Any) -> None:
    """Refuse, before any work, a pipeline whose training objective and text encoding are not written here."""
    cls = type(pipe).__name__
    name, _ = denoiser_of(pipe)
    known = is_flux(pipe) or cls.startswith(("StableDiffusion3", "StableDiffusionXL"))
    known = known or (name == "unet" and hasattr(pipe, "encode_prompt") and cls.startswith("StableDiffusion"))
    if not known:
        raise FinetuneError(f"safetext finetune supports {SUPPORTED} pipelines, not {cls}")


def image_size(pipe: Any) -> tuple[int, int]:
    """(width, height) in pixels of the images the denoiser's default latent decodes to."""
    if is_flux(pipe):  # FluxPipeline's own default: default_sample_size latent pixels per side
        side = int(pipe.default_sample_size * pipe.vae_scale_factor)
        width, height = generation_default(pipe, "width"), generation_default(pipe, "height")
        return int(width or side), int(height or side)
    _, denoiser = denoiser_of(pipe)
    size = denoiser.config.get("sample_size")
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    if isinstance(size, (list, tuple)):
        return int(size[1]) * factor, int(size[0]) * factor
    return int(size) * factor, int(size) * factor


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> (3, H, W) float in [-1, 1], the range diffusers' VAEs take."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(array))


def vae_latents(pipe: Any, x: torch.Tensor) -> torch.Tensor:
    """The posterior mean, shifted and scaled as the pipeline's decoder undoes it."""
    config = pipe.vae.config
    z = pipe.vae.encode(x).latent_dist.mean
    shift = config.get("shift_factor") or 0.0
    return (z - shift) * config.scaling_factor


def testbed_latents(pipe: Any, x: torch.Tensor) -> torch.Tensor:
    """The testbed's latents: scaled image channels plus its fixed position channels
    (``safetext.testbed.model.position_channels``), as the testbed was trained."""
    from safetext.testbed import model as tb

    z = pipe.vae.encode(x).latent_dist.mean[:, : tb.IMAGE_CHANNELS] * pipe.vae.config.scaling_factor
    position = tb.position_channels(z.shape[-2], z.shape[-1]).to(z)
    return torch.cat([z, position.expand(z.shape[0], -1, -1, -1)], 1)


def default_latent_encoder(pipe: Any) -> LatentEncoder:
    """:func:`testbed_latents` for a VAE of the testbed's layout (6 latent channels whose last 2
    the decoder gives zero weight: position channels), else :func:`vae_latents`."""
    from safetext.testbed import model as tb

    vae = getattr(pipe, "vae", None)
    conv = getattr(vae, "post_quant_conv", None)
    if vae is not None and vae.config.latent_channels == tb.LATENT_CHANNELS and conv is not None:
        if bool((conv.weight[:, tb.IMAGE_CHANNELS :] == 0).all()):
            return testbed_latents
    return vae_latents


@torch.no_grad()
def encode_images(pipe: Any, images: list[Image.Image], encoder: LatentEncoder | None = None) -> torch.Tensor:
    """Latents of ``images`` (float32, on the pipeline's device)."""
    encoder = encoder or default_latent_encoder(pipe)
    device, dtype = pipe.vae.device, pipe.vae.dtype
    out = []
    for i in range(0, len(images), ENCODE_CHUNK):
        x = torch.stack([to_tensor(im) for im in images[i : i + ENCODE_CHUNK]]).to(device, dtype)
        out.append(encoder(pipe, x).float())
    return torch.cat(out)


@torch.no_grad()
def encode_texts(pipe: Any, prompts: list[str], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The denoiser's text inputs for each prompt, batch first, by denoiser keyword."""
    name, _ = denoiser_of(pipe)
    device = pipe.device
    parts: list[dict[str, torch.Tensor]] = []
    for i in range(0, len(prompts), ENCODE_CHUNK):
        chunk = prompts[i : i + ENCODE_CHUNK]
        cls = type(pipe).__name__
        if is_flux(pipe):
            length = int(generation_default(pipe, "max_sequence_length") or 512)
            embeds, pooled, text_ids = pipe.encode_prompt(chunk, prompt_2=None, device=device, max_sequence_length=length)
            part = {"encoder_hidden_states": embeds, "pooled_projections": pooled,
                    "txt_ids": text_ids.expand(len(chunk), -1, -1)}  # batch first like the rest; denoise takes one row
            if pipe.transformer.config.guidance_embeds:
                scale = float(generation_default(pipe, "guidance_scale") or 0.0)
                part["guidance"] = torch.full((len(chunk),), scale, device=device)
            parts.append(part)
        elif cls.startswith("StableDiffusion3"):
            embeds, _, pooled, _ = pipe.encode_prompt(chunk, None, None, device=device, do_classifier_free_guidance=False)
            parts.append({"encoder_hidden_states": embeds, "pooled_projections": pooled})
        elif cls.startswith("StableDiffusionXL"):
            embeds, _, pooled, _ = pipe.encode_prompt(chunk, device=device, do_classifier_free_guidance=False)
            width, height = size
            ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=embeds.dtype, device=device)
            parts.append({"encoder_hidden_states": embeds, "text_embeds": pooled, "time_ids": ids.expand(len(chunk), -1)})
        elif name == "unet" and hasattr(pipe, "encode_prompt") and cls.startswith("StableDiffusion"):
            embeds, _ = pipe.encode_prompt(chunk, device, 1, False)
            parts.append({"encoder_hidden_states": embeds})
        else:
            raise FinetuneError(f"safetext finetune supports {SUPPORTED} pipelines, not {cls}")
    return {key: torch.cat([p[key] for p in parts]).float() for key in parts[0]}


def denoise(denoiser: Any, component: str, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
    """One denoiser prediction with the conditioning :func:`encode_texts` made."""
    if "txt_ids" in cond:
        return _denoise_flux(denoiser, x_t, t, cond)
    if component == "transformer":
        return denoiser(hidden_states=x_t, timestep=t, encoder_hidden_states=cond["encoder_hidden_states"],
                        pooled_projections=cond["pooled_projections"], return_dict=False)[0]
    added = {k: cond[k] for k in ("text_embeds", "time_ids") if k in cond}
    return denoiser(x_t, t, encoder_hidden_states=cond["encoder_hidden_states"],
                    added_cond_kwargs=added or None, return_dict=False)[0]


def _denoise_flux(denoiser: Any, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
    """FLUX's prediction for (B, C, H, W) latents, in that layout: packed in, unpacked out."""
    from diffusers import FluxPipeline

    b, c, h, w = x_t.shape
    if h % FLUX_PACK or w % FLUX_PACK:
        raise FinetuneError(f"FLUX packs 2x2 latent patches; the latent is {h}x{w}")
    tokens = FluxPipeline._pack_latents(x_t, b, c, h, w)
    img_ids = FluxPipeline._prepare_latent_image_ids(b, h // FLUX_PACK, w // FLUX_PACK, x_t.device, x_t.dtype)
    guidance = cond.get("guidance")
    pred = denoiser(hidden_states=tokens, timestep=t / FLUX_TIME_SCALE, guidance=guidance,
                    pooled_projections=cond["pooled_projections"], encoder_hidden_states=cond["encoder_hidden_states"],
                    txt_ids=cond["txt_ids"][0], img_ids=img_ids, return_dict=False)[0]
    # _unpack_latents takes pixel sizes: with a scale factor of 1 they are the latent's own
    return FluxPipeline._unpack_latents(pred, h, w, 1)


@dataclass(frozen=True)
class Objective:
    """Noising and regression target of one scheduler config (see the module doc)."""

    kind: str  # "flow" | "epsilon" | "v_prediction" | "sample"
    train_timesteps: int
    alphas_cumprod: torch.Tensor | None

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> Objective:
        config = scheduler.config
        steps = int(config.get("num_train_timesteps", 1000))
        if "FlowMatch" in type(scheduler).__name__:
            return cls("flow", steps, None)
        kind = config.get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction", "sample"):
            raise FinetuneError(f"scheduler prediction_type {kind!r} is not epsilon, v_prediction or sample")
        from diffusers import DDPMScheduler

        betas = DDPMScheduler.from_config(config)  # the same beta schedule, with its alphas_cumprod
        return cls(kind, steps, betas.alphas_cumprod.float())

    def sample(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, timestep, target) for clean latents ``x0``; draws come from ``generator`` (on the CPU)."""
        n = x0.shape[0]
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        if self.kind == "flow":
            s = torch.rand(n, generator=generator).to(x0)
            s4 = s[:, None, None, None]
            return (1 - s4) * x0 + s4 * noise, s * self.train_timesteps, noise - x0
        assert self.alphas_cumprod is not None
        t = torch.randint(0, self.train_timesteps, (n,), generator=generator)
        alpha = self.alphas_cumprod[t].to(x0)[:, None, None, None]
        a, s = alpha.sqrt(), (1 - alpha).sqrt()
        x_t = a * x0 + s * noise
        target = {"epsilon": noise, "v_prediction": a * noise - s * x0, "sample": x0}[self.kind]
        return x_t, t.to(x0.device), target

"""Guard cost at full size, from FLOP counts of released architectures built without weights.

Timing a 12B-parameter transformer needs a GPU. Its arithmetic does not: every model here
is built from its released config on PyTorch's ``meta`` device (shapes, no storage), and
one denoiser forward at the usual resolution runs under ``torch.utils.flop_counter``,
which counts the matmul and attention FLOPs of every module. The text encoders and the
VAE decoder are counted the same way. From the per-block counts the guarded/unguarded
ratio of a whole generation follows, for any position of the last localized block:

* double- and single-stream transformers (SD3.5, FLUX.1, Qwen-Image): each rewritten image
  adds one benign row to every denoiser call from the start step on; the row runs the
  embedders and blocks ``0..L`` and is dropped (later blocks and the output head run on
  the original rows only). Extra FLOPs per step: ``row - blocks after L - output head``.
  SD3.5 runs the same rows as a call of their own before the pipeline's and stops at block
  ``L``'s text K/V projections, so for it the count is an upper bound, by the rest of block
  ``L`` on one row;
* cross-attention denoisers (SDXL's U-Net, PixArt-Sigma, Sana): no extra rows and no extra
  K/V projections (the benign text takes the rewritten rows' place before the localized
  modules project it); where the model projects its caption first (PixArt, Sana), the
  mixed text of the call's rows goes once more through that projection, once per call;
* every family: one more text encoding, of the benign prompt.

The paper's cached pass (generate the benign prompt in full, recording its K/V, then the
original) is the other column: a second denoising loop and a second text encoding.

FLOP ratios equal wall-time ratios when the GPU is compute-bound, which a 1024x1024 image
(4,096 or more image tokens) is on one H100/H200-class card; elementwise work (norms,
activations) is not counted, and scales with the rows like the matmuls around it. Start
step 0 (the costliest; a later start scales the denoiser share by ``1 - start``), one
rewritten image per prompt, the pipelines' default steps and guidance.

    python benchmarks/flops.py          # writes benchmarks/results/flops.{json,md}
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

RESULTS = Path(__file__).resolve().parent / "results"
#: Fractions of the block count at which the last localized block is placed for the table.
POSITIONS = (0.0, 0.25, 0.5, 1.0)
#: Child modules of a transformer that run after its blocks (dropped benign rows skip them).
HEAD_MODULES = ("norm_out", "proj_out")
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
#: Caption modules that run before the blocks of cross-attention DiTs (Sana's norm has no FLOPs).
TEXT_PATH = ("caption_projection",)


@dataclass(frozen=True)
class FullSize:
    """One released model: how to build its parts on ``meta`` and how its pipeline calls them."""

    name: str
    kind: str  # "cross" (no extra rows) or "stream" (benign rows up to the last localized block)
    resolution: int
    steps: int
    rows: int  # denoiser rows per prompt and step: 2 under CFG (or true CFG), 1 guidance-distilled
    denoiser: Callable[[], torch.nn.Module]
    inputs: Callable[[int], dict[str, Any]]  # rows -> forward kwargs (meta tensors)
    encoders: tuple[tuple[str, Callable[[], torch.nn.Module], int], ...]  # (name, builder, tokens)
    encodes: int  # prompts encoded per unguarded call: 2 with a negative prompt, 1 without
    vae: Callable[[], Any] | None = None
    latent: tuple[int, ...] = ()  # (channels, h, w) decoded by the VAE, batch 1
    note: str = ""


@dataclass
class Counts:
    """FLOPs of one denoiser row and of the other parts, per call."""

    row: float
    blocks: list[float]  # per block, in forward order
    head: float
    text_path: float = 0.0  # caption projection (PixArt, Sana), one row
    encoders: dict[str, float] = field(default_factory=dict)
    vae: float | None = None


def _meta(fn: Callable[[], Any]) -> Any:
    with torch.device("meta"):
        return fn()


def _count(fn: Callable[[], Any]) -> dict[str, float]:
    """FLOPs per module path (``Global`` is the total) of running ``fn``."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return {name: float(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}


# --------------------------------------------------------------------------- released configs


def _clip_l() -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768))


def _clip_g() -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    return CLIPTextModelWithProjection(config)


def _t5_xxl() -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu", vocab_size=32128)
    return T5EncoderModel(config)


def _gemma2_2b() -> torch.nn.Module:
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000)
    return Gemma2Model(config)


def _qwen25_7b() -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064)
    return Qwen2Model(config)


def _kl_vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    blocks = 4
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks, layers_per_block=2,
    )


def _sdxl_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


def _sdxl_inputs(rows: int) -> dict[str, Any]:
    return {
        "sample": torch.randn(rows, 4, 128, 128), "timestep": torch.ones(rows), "encoder_hidden_states": torch.randn(rows, 77, 2048),
        "added_cond_kwargs": {"text_embeds": torch.randn(rows, 1280), "time_ids": torch.randn(rows, 6)},
    }


def _sd35_large() -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=38, attention_head_dim=64, num_attention_heads=38,
        joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048, pos_embed_max_size=192, qk_norm="rms_norm",
    )


def _sd35_medium() -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
        joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384, qk_norm="rms_norm",
        dual_attention_layers=tuple(range(13)),
    )


def _sd3_inputs(rows: int) -> dict[str, Any]:
    # 77 CLIP tokens + 256 T5 tokens (the pipeline's default max_sequence_length).
    return {
        "hidden_states": torch.randn(rows, 16, 128, 128), "encoder_hidden_states": torch.randn(rows, 333, 4096),
        "pooled_projections": torch.randn(rows, 2048), "timestep": torch.ones(rows),
    }


def _flux_dev() -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
    )


def _flux_inputs(rows: int) -> dict[str, Any]:
    image, text = 64 * 64, 512  # 1024x1024: 128x128 latents in 2x2 patches; T5 max_sequence_length 512
    return {
        "hidden_states": torch.randn(rows, image, 64), "encoder_hidden_states": torch.randn(rows, text, 4096),
        "pooled_projections": torch.randn(rows, 768), "timestep": torch.ones(rows), "guidance": torch.ones(rows),
        "img_ids": torch.zeros(image, 3), "txt_ids": torch.zeros(text, 3),
    }


def _qwen_image() -> torch.nn.Module:
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
        joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56),
    )


_QWEN_SIDE = 1328 // 16  # 1328x1328: 8x VAE, 2x2 patches


def _qwen_inputs(rows: int) -> dict[str, Any]:
    text = 128  # a prompt of about 100 tokens after the chat template's system part
    return {
        "hidden_states": torch.randn(rows, _QWEN_SIDE**2, 64), "encoder_hidden_states": torch.randn(rows, text, 3584),
        "encoder_hidden_states_mask": None, "timestep": torch.ones(rows), "img_shapes": [[(1, _QWEN_SIDE, _QWEN_SIDE)]] * rows,
    }


def _pixart_sigma() -> torch.nn.Module:
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(sample_size=128, caption_channels=4096, use_additional_conditions=False, out_channels=8)


def _pixart_inputs(rows: int) -> dict[str, Any]:
    return {
        "hidden_states": torch.randn(rows, 4, 128, 128), "encoder_hidden_states": torch.randn(rows, 300, 4096),
        "timestep": torch.ones(rows), "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }


def _sana_1600m() -> torch.nn.Module:
    from diffusers import SanaTransformer2DModel

    return SanaTransformer2DModel()  # the defaults are Sana 1600M at 1024x1024


def _sana_inputs(rows: int) -> dict[str, Any]:
    return {"hidden_states": torch.randn(rows, 32, 32, 32), "encoder_hidden_states": torch.randn(rows, 300, 2304), "timestep": torch.ones(rows)}


def _dc_ae() -> Any:
    from diffusers import AutoencoderDC

    return AutoencoderDC()  # the defaults are DC-AE f32c32, Sana's


MODELS: tuple[FullSize, ...] = (
    FullSize("SDXL base 1.0", "cross", 1024, 50, 2, _sdxl_unet, _sdxl_inputs, (("CLIP-L", _clip_l, 77), ("CLIP-bigG", _clip_g, 77)), 2,
             lambda: _kl_vae(4), (4, 128, 128)),
    FullSize("PixArt-Sigma XL", "cross", 1024, 20, 2, _pixart_sigma, _pixart_inputs, (("T5-XXL", _t5_xxl, 300),), 2,
             lambda: _kl_vae(4), (4, 128, 128)),
    FullSize("Sana 1600M", "cross", 1024, 20, 2, _sana_1600m, _sana_inputs, (("Gemma-2-2B", _gemma2_2b, 300),), 2,
             _dc_ae, (32, 32, 32)),
    FullSize("SD3.5 medium", "stream", 1024, 40, 2, _sd35_medium, _sd3_inputs, (("CLIP-L", _clip_l, 77), ("CLIP-bigG", _clip_g, 77), ("T5-XXL", _t5_xxl, 256)), 2,
             lambda: _kl_vae(16), (16, 128, 128)),
    FullSize("SD3.5 large", "stream", 1024, 28, 2, _sd35_large, _sd3_inputs, (("CLIP-L", _clip_l, 77), ("CLIP-bigG", _clip_g, 77), ("T5-XXL", _t5_xxl, 256)), 2,
             lambda: _kl_vae(16), (16, 128, 128)),
    FullSize("FLUX.1-dev", "stream", 1024, 28, 1, _flux_dev, _flux_inputs, (("CLIP-L", _clip_l, 77), ("T5-XXL", _t5_xxl, 512)), 1,
             lambda: _kl_vae(16), (16, 128, 128), "guidance-distilled: no CFG rows"),
    FullSize("Qwen-Image", "stream", 1328, 50, 2, _qwen_image, _qwen_inputs, (("Qwen2.5-VL-7B (text)", _qwen25_7b, 160),), 2,
             None, (), "true CFG: two calls of one row per step; VAE decode not counted"),
)


# --------------------------------------------------------------------------- counting


def _block_names(model: torch.nn.Module) -> list[str]:
    lists = [name for name in BLOCK_LISTS if hasattr(model, name)]
    return [f"{name}.{i}" for name in lists for i in range(len(getattr(model, name)))]


def denoiser_counts(model: torch.nn.Module, inputs: dict[str, Any]) -> Counts:
    """FLOPs of one ``model(**inputs)`` call: in all, per block, of its output head and of its caption projection."""
    flops = _count(lambda: model(**inputs, return_dict=False))
    root = type(model).__name__
    blocks = [flops.get(f"{root}.{name}", 0.0) for name in _block_names(model)]
    head = sum(flops.get(f"{root}.{name}", 0.0) for name in HEAD_MODULES)
    text_path = sum(flops.get(f"{root}.{name}", 0.0) for name in TEXT_PATH)
    return Counts(row=flops["Global"], blocks=blocks, head=head, text_path=text_path)


def count(spec: FullSize) -> Counts:
    """FLOPs of ``spec``'s denoiser (one row), its text encoders and its VAE decode, on meta."""
    model = _meta(spec.denoiser).eval()
    counts = denoiser_counts(model, _meta(lambda: spec.inputs(1)))
    for name, build, tokens in spec.encoders:
        encoder = _meta(build).eval()
        ids = _meta(lambda tokens=tokens: torch.zeros(1, tokens, dtype=torch.long))
        counts.encoders[name] = _count(lambda encoder=encoder, ids=ids: encoder(input_ids=ids))["Global"]
    if spec.vae is not None:
        decoder = _meta(spec.vae).eval()
        latents = _meta(lambda: torch.randn(1, *spec.latent))
        counts.vae = _count(lambda: decoder.decode(latents))["Global"]
    return counts


def unguarded(spec: FullSize, counts: Counts) -> float:
    """FLOPs of one unguarded generation of one image."""
    return spec.steps * spec.rows * counts.row + spec.encodes * sum(counts.encoders.values()) + (counts.vae or 0.0)


def extra_per_step(counts: Counts, last_block: int) -> float:
    """Extra denoiser FLOPs per step and rewritten image of a stream model: the benign row
    through the embedders and blocks ``0..last_block``."""
    if not 0 <= last_block < len(counts.blocks):
        raise ValueError(f"last_block must be in 0..{len(counts.blocks) - 1}, got {last_block}")
    return counts.row - sum(counts.blocks[last_block + 1 :]) - counts.head


def guarded_extra(spec: FullSize, counts: Counts, last_block: int | None = None, start: float = 0.0) -> float:
    """Extra FLOPs of the guard's batched path for one rewritten image (benign encode included)."""
    encode = sum(counts.encoders.values())
    if spec.kind != "stream":
        return encode + spec.rows * counts.text_path  # the call's mixed text through the caption projection, once
    if last_block is None:
        raise ValueError(f"{spec.name} needs the last localized block")
    return (1.0 - start) * spec.steps * extra_per_step(counts, last_block) + encode


def cached_extra(spec: FullSize, counts: Counts) -> float:
    """Extra FLOPs of the paper's cached pass: the benign prompt's whole denoising loop and encoding."""
    return spec.steps * spec.rows * counts.row + spec.encodes * sum(counts.encoders.values())


def report(specs: tuple[FullSize, ...] = MODELS) -> dict[str, Any]:
    rows = []
    for spec in specs:
        counts = count(spec)
        base = unguarded(spec, counts)
        n = len(counts.blocks)
        entry: dict[str, Any] = {
            "model": spec.name, "kind": spec.kind, "resolution": spec.resolution, "steps": spec.steps, "rows": spec.rows,
            "denoiser_tflops_per_row": counts.row / 1e12, "blocks": n, "encoders_tflops": {k: v / 1e12 for k, v in counts.encoders.items()},
            "vae_tflops": None if counts.vae is None else counts.vae / 1e12, "generation_tflops": base / 1e12,
            "cached_ratio": 1.0 + cached_extra(spec, counts) / base, "note": spec.note,
        }
        if spec.kind == "stream":
            entry["ratios"] = {}
            for frac in POSITIONS:
                last = min(n - 1, round(frac * (n - 1)))
                entry["ratios"][f"block {last} ({frac:.0%})"] = 1.0 + guarded_extra(spec, counts, last) / base
        else:
            entry["ratios"] = {"any modules": 1.0 + guarded_extra(spec, counts) / base}
        rows.append(entry)
    return {"models": rows, "torch": torch.__version__}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Guard cost at full size (FLOP counts)",
        "",
        "Released configs built on the meta device (no weights); one denoiser forward, the text encoders and the VAE decode "
        "counted with torch.utils.flop_counter. Whole generation of one image, start step 0, one rewritten image. "
        "FLOP ratios are wall-time ratios where the GPU is compute-bound; they are predictions, not timings.",
        "",
        "| model | steps x rows | denoiser TFLOPs/row | generation TFLOPs | guarded / unguarded | paper's cached pass | note |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for row in result["models"]:
        ratios = "; ".join(f"{k}: {v:.4f}x" for k, v in row["ratios"].items())
        lines.append(
            f"| {row['model']} | {row['steps']} x {row['rows']} | {row['denoiser_tflops_per_row']:.1f} | {row['generation_tflops']:.0f} | "
            f"{ratios} | {row['cached_ratio']:.2f}x | {row['note']} |"
        )
    lines += ["", f"torch {result['torch']}. Stream rows: the last localized block at 0%, 25%, 50% and 100% of the block list.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--model", action="append", default=[], help="only these (names as in the table; repeatable)")
    args = parser.parse_args(argv)
    specs = tuple(s for s in MODELS if not args.model or s.name in args.model)
    result = report(specs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flops.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "flops.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

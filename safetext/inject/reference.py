"""Reference configs used to check the shipped presets against the real architectures.

``IF_I_XL_UNET_CONFIG`` is safetext's transcription of the published
``DeepFloyd/IF-I-XL-v1.0`` ``unet/config.json``, written from the model's documented
architecture rather than copied from the file. The module names and their forward order depend only on
the block types and ``layers_per_block``; the channel widths may differ from the real
file and only change parameter counts.
"""

from __future__ import annotations

from typing import Any

IF_I_XL_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "gelu",
    "addition_embed_type": "text",
    "addition_embed_type_num_heads": 64,
    "attention_head_dim": 64,
    "block_out_channels": [512, 1024, 1536, 2048],
    "center_input_sample": False,
    "class_embed_type": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2560,
    "cross_attention_norm": "group_norm",
    "down_block_types": [
        "ResnetDownsampleBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": 4096,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 3,
    "layers_per_block": 3,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 6,
    "resnet_time_scale_shift": "scale_shift",
    "sample_size": 64,
    "time_cond_proj_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "up_block_types": [
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "ResnetUpsampleBlock2D",
    ],
    "upcast_attention": False,
    "use_linear_projection": False,
}


def if_i_xl_unet_on_meta() -> Any:
    """The IF-I-XL U-Net built on the meta device: real module tree, no memory, no weights."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(IF_I_XL_UNET_CONFIG)


def traced_attention_order(unet: Any, batch: int = 2) -> list[str]:
    """Text attention module names in the order a forward pass calls them (meta tensors)."""
    import torch

    from safetext.inject.sites import attention_kind

    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
        for name, module in unet.named_modules()
        if attention_kind(module) is not None
    ]
    size = unet.config.sample_size
    try:
        with torch.no_grad():
            unet(
                torch.empty(batch, unet.config.in_channels, size, size, device="meta"),
                torch.zeros(batch, device="meta"),
                encoder_hidden_states=torch.empty(batch, 8, unet.config.encoder_hid_dim, device="meta"),
            )
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))

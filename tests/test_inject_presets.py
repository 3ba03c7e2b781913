"""InjectionConfig, preset files, ``preset="auto"``, and the candidate modules in forward order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _inject_helpers import KINDS, FakePolicy, call_kwargs, denoiser, tiny

from safetext.inject import (
    InjectionConfig,
    PresetError,
    UnsupportedArchitectureError,
    attention_sites,
    auto_preset,
    builtin_presets,
    candidate_modules,
    resolve_preset,
)
from safetext.inject.reference import if_i_xl_unet_on_meta, traced_attention_order

# ------------------------------------------------------------------ InjectionConfig


@pytest.mark.parametrize(
    ("start", "steps", "expected"),
    [(0.08, 50, 4), (0.04, 50, 2), (0.0, 28, 0), (0.08, 10, 1), (0.5, 4, 2), (0.99, 10, 9), (0.9, 1, 0)],
)
def test_start_step(start: float, steps: int, expected: int) -> None:
    assert InjectionConfig(modules=["m"], start=start).start_step(steps) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"modules": []},
        {"modules": ["a", "a"]},
        {"modules": ["a"], "swap": "q"},
        {"modules": ["a"], "start": 1.0},
        {"modules": ["a"], "start": -0.1},
        {"modules": ["a"], "unknown": 1},
    ],
)
def test_invalid_configs_are_rejected(fields: dict) -> None:
    with pytest.raises(ValueError):
        InjectionConfig(**fields)


def test_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    config = InjectionConfig(modules=["a.attn2", "b.attn2"], start=0.25, source="test", name="t")
    path = tmp_path / "preset.yaml"
    config.to_yaml(path)
    assert InjectionConfig.from_yaml(path) == config
    (tmp_path / "legacy.yaml").write_text("modules: [a]\nswap: kv\n")  # older files name the only swap
    assert InjectionConfig.from_yaml(tmp_path / "legacy.yaml").modules == ["a"]
    (tmp_path / "bad.yaml").write_text("modules: [a]\nswap: k\n")
    with pytest.raises(PresetError, match="bad.yaml"):
        InjectionConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(PresetError, match="cannot read"):
        InjectionConfig.from_yaml(tmp_path / "missing.yaml")


def test_packaged_presets_hold_the_paper_layers() -> None:
    presets = builtin_presets()
    assert presets["sdxl-base-1.0"].modules == [
        f"up_blocks.0.attentions.2.transformer_blocks.{i}.attn2" for i in (1, 2, 3)
    ]
    assert presets["sdxl-base-1.0"].start_step(50) == 4
    assert presets["sd3-medium"].modules == ["transformer_blocks.10.attn"]
    assert presets["sd3-medium"].start_step(28) == 0
    assert presets["if-i-xl-v1.0"].modules == ["up_blocks.1.attentions.3"]
    assert presets["if-i-xl-v1.0"].start_step(50) == 2
    assert all(p.source for p in presets.values())


def test_resolve_preset_forms(tmp_path: Path) -> None:
    pipe = tiny("sd")
    assert resolve_preset(pipe, ["x.attn2"]).modules == ["x.attn2"]
    assert resolve_preset(pipe, ["x.attn2"]).start == 0.0
    assert resolve_preset(pipe, "sd3-medium").name == "sd3-medium"
    path = tmp_path / "p.yaml"
    InjectionConfig(modules=["y.attn2"], start=0.1).to_yaml(path)
    assert resolve_preset(pipe, str(path)).modules == ["y.attn2"]
    config = InjectionConfig(modules=["z"])
    assert resolve_preset(pipe, config) is config
    with pytest.raises(PresetError, match="no preset file or packaged preset"):
        resolve_preset(pipe, "nonexistent-preset")


# ------------------------------------------------------------------ auto


@pytest.mark.parametrize("kind", KINDS)
def test_auto_rejects_unknown_models_naming_localize(kind: str) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="safetext localize"):
        auto_preset(tiny(kind))


def test_auto_rejects_flux_naming_localize() -> None:
    from safetext import GuardError
    from safetext.guard import Guard
    from safetext.pipelines import build_tiny_pipeline

    flux = build_tiny_pipeline("flux")
    with pytest.raises(UnsupportedArchitectureError, match="2 double-stream and 2 single-stream.*safetext localize"):
        auto_preset(flux)
    with pytest.raises(GuardError, match="safetext localize") as caught:  # the guard fails closed with a GuardError
        Guard(flux, policy=FakePolicy())
    assert isinstance(caught.value.__cause__, UnsupportedArchitectureError)


def test_auto_prefers_the_model_folder_preset(tmp_path: Path) -> None:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd")
    own = InjectionConfig(modules=[candidate_modules(pipe)[0]], name="shipped-with-model")
    own.to_yaml(tmp_path / "safetext_preset.yaml")
    pipe.register_to_config(_name_or_path=str(tmp_path))
    assert auto_preset(pipe) == own


def _with_denoiser(kind: str, model: torch.nn.Module) -> object:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline(kind)
    pipe.register_modules(**{"unet" if kind != "sd3" else "transformer": model})
    return pipe


def _sdxl_base_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(
            sample_size=128,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )


def _sd3_medium_transformer() -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    with torch.device("meta"):
        return SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        )


@pytest.mark.parametrize(
    ("kind", "build", "preset", "n_candidates", "kv_share"),
    [
        ("sdxl", _sdxl_base_unet, "sdxl-base-1.0", 70, 0.0061),
        ("sd3", _sd3_medium_transformer, "sd3-medium", 24, 0.0023),
        ("if", if_i_xl_unet_on_meta, "if-i-xl-v1.0", 22, None),
    ],
)
def test_auto_recognises_the_paper_models(kind: str, build, preset: str, n_candidates: int, kv_share) -> None:
    """Real architectures, built on the meta device (no weights): names, counts and K/V shares match the paper."""
    model = build()
    pipe = _with_denoiser(kind, model)
    config = auto_preset(pipe)
    assert config.name == preset
    sites = attention_sites(model)
    assert len(sites) == n_candidates  # the paper swept 70 (SDXL), 24 (SD3) and 22 (IF) layers
    assert set(config.modules) <= {s.name for s in sites}
    if kv_share is not None:  # the paper's "share of params": the swapped K/V projections
        total = sum(p.numel() for p in model.parameters())
        share = sum(s.kv_params for s in sites if s.name in config.modules) / total
        assert share == pytest.approx(kv_share, abs=0.00005)


def test_if_preset_module_is_index_17_in_traced_forward_order() -> None:
    unet = if_i_xl_unet_on_meta()
    order = traced_attention_order(unet)
    assert order == candidate_modules(unet)
    assert len(order) == 22
    assert order[17] == "up_blocks.1.attentions.3" == builtin_presets()["if-i-xl-v1.0"].modules[0]


# ------------------------------------------------------------------ candidates


@pytest.mark.parametrize("kind", KINDS)
def test_candidates_are_in_forward_order_with_kinds(kind: str) -> None:
    from safetext.inject.sites import attention_kind

    pipe = tiny(kind)
    order: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
        for name, module in denoiser(pipe).named_modules()
        if attention_kind(module) is not None
    ]
    try:
        pipe("a", **call_kwargs(kind, num_inference_steps=1))
    finally:
        for handle in handles:
            handle.remove()
    traced = list(dict.fromkeys(order))
    assert candidate_modules(pipe) == traced
    kinds = {site.kind for site in attention_sites(pipe)}
    assert kinds == {"sd": {"cross"}, "sdxl": {"cross"}, "if": {"added_kv"}, "sd3": {"joint"}}[kind]
    if kind in ("sd", "sdxl"):
        assert all(name.endswith("attn2") for name in traced)


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ({"num_layers": 38, "num_attention_heads": 38, "caption_projection_dim": 2432, "qk_norm": "rms_norm"}, "SD3.5 large"),
        (
            {"num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536, "qk_norm": "rms_norm",
             "dual_attention_layers": list(range(13))},
            "SD3.5 medium",
        ),
    ],
)
def test_auto_names_sd35_and_points_to_localize(config: dict, name: str) -> None:
    """SD3.5 is recognised from its transformer config and never given SD3-medium's preset."""

    class StableDiffusion3Pipeline:  # the class name is what presets match on
        transformer = type("T", (), {"config": {**config, "attention_head_dim": 64, "joint_attention_dim": 4096,
                                                "patch_size": 2, "in_channels": 16}})()

    with pytest.raises(UnsupportedArchitectureError, match=rf"{name}.*safetext localize"):
        auto_preset(StableDiffusion3Pipeline())

"""The DiT testbed (safetext/testbed/dit): components, the trainer's phases, resume and export."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import FluxPipeline  # noqa: E402

from safetext.testbed.dit import model as dm  # noqa: E402
from safetext.testbed.dit import train as dt  # noqa: E402

TINY_RUN = ["--tiny", "--text-pretrain", "2", "--text-batch", "4", "--batch", "2", "--threads", "1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_pack_and_ids_match_flux_pipeline() -> None:
    z = torch.randn(2, 6, *dm.tb.LATENT_SIZE)
    h, w = dm.tb.LATENT_SIZE
    packed = dt.pack(z)
    assert torch.equal(packed, FluxPipeline._pack_latents(z, 2, 6, h, w))
    assert torch.equal(dt.unpack(packed, h, w), z)
    expected = FluxPipeline._prepare_latent_image_ids(2, h // 2, w // 2, torch.device("cpu"), torch.float32)
    assert torch.equal(dt.image_ids(h, w, torch.device("cpu")), expected)


def test_full_size_components_fit_the_budget() -> None:
    components = dm.build_components(seed=0)
    counts = dm.parameter_counts(components)
    assert 2 * sum(counts.values()) <= 30e6  # fp16 bytes
    cfg = components["transformer"].config
    assert cfg.in_channels == 4 * components["vae"].config.latent_channels == 24
    assert not cfg.guidance_embeds and (cfg.num_layers, cfg.num_single_layers) == (3, 6)
    assert components["vae"].config.shift_factor == 0.0
    ids = components["tokenizer_2"]('a red sign that says "hello"', padding="max_length", max_length=dm.T5_MAX_LENGTH).input_ids
    assert len(ids) == dm.T5_MAX_LENGTH and ids[dm.SPELL_START :] == [components["tokenizer_2"].pad_token_id] * dm.SPELL_SLOTS


def test_every_prompt_leaves_the_spelling_slots_to_padding() -> None:
    import random

    from safetext.testbed.render import sample_spec

    tokenizer, rng = dm.t5_tokenizer(), random.Random(0)
    longest = max(len(tokenizer(sample_spec(rng, split).prompt()).input_ids) for split in ("train", "eval") for _ in range(500))
    assert longest <= dm.SPELL_START


def test_joint_tokenizer_feeds_the_first_testbeds_batches(tmp_path: Path) -> None:
    from safetext.testbed import data

    clip = dm.tb.build_tokenizer(tmp_path / "tok")
    joint = dt.JointTokenizer(clip, dm.t5_tokenizer())
    x, m, ids, spell = data.DenoiserBatches(0, 2, joint, 5, 6)[0]  # type: ignore[arg-type]
    x1, _, ids1, spell1 = data.DenoiserBatches(0, 2, clip, 5, 6)[0]
    clip_ids, t5_ids = dt.JointTokenizer.split(ids)
    assert torch.equal(x, x1) and torch.equal(clip_ids, ids1) and torch.equal(spell, spell1)
    assert t5_ids.shape == (2, dm.T5_MAX_LENGTH)


def test_profile_is_valid_and_names_the_trained_size() -> None:
    from safetext.pipelines.profile import ModelProfile

    profile = ModelProfile.model_validate(dm.PROFILE)
    assert profile.generation["height"] == dm.HEIGHT and profile.generation["width"] == dm.WIDTH
    assert profile.generation["max_sequence_length"] == dm.T5_MAX_LENGTH


def test_cli_refuses_a_missing_autoencoder_or_device(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        dt.parse_args(["--vae-from", str(tmp_path)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            dt.parse_args(["--device", "cuda"])


def _state(folder: Path) -> dict:
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A straight 4-step run, and a 2-step run resumed to 4 and exported."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dit")
    straight, resumed, export = root / "straight", root / "resumed", root / "export"
    dt.main([*TINY_RUN, "--out", str(straight), "--steps", "4"])
    dt.main([*TINY_RUN, "--out", str(resumed), "--steps", "2", "--ckpt-every", "2"])
    half = _state(resumed)
    assert (half["text_step"], half["step"]) == (2, 2)
    dt.main([*TINY_RUN, "--out", str(resumed), "--steps", "4", "--export", str(export)])
    return {"straight": straight, "resumed": resumed, "export": export}


@pytest.mark.slow
def test_resume_continues_to_the_straight_run(runs: dict[str, Path]) -> None:
    a, b = _state(runs["straight"]), _state(runs["resumed"])
    assert a["step"] == b["step"] == 4 and a["text_step"] == b["text_step"] == 2
    for part in ("transformer", "text_encoder", "text_encoder_2", "heads", "ema_transformer", "ema_text_encoder_2"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"
    segments = [(s["from_step"], s["to_step"]) for s in b["segments"]]
    assert segments == [(0, 2), (2, 4)]
    phases = [line for line in (runs["resumed"] / "log.jsonl").read_text().splitlines()]
    assert any('"spell"' in row for row in phases) and any('"flow"' in row for row in phases)


@pytest.mark.slow
def test_export_is_a_stock_flux_pipeline(runs: dict[str, Path]) -> None:
    import json

    from safetext import Guard
    from safetext.inject import attention_sites
    from safetext.pipelines.profile import load_profile

    folder = runs["export"]
    pipe = FluxPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    assert pipe.transformer.dtype == torch.float32
    profile = load_profile(folder)
    assert profile is not None and profile.name == "safetext-testbed-dit"
    kwargs = dict(profile.generation, num_inference_steps=2)
    pipe.set_progress_bar_config(disable=True)
    image = pipe('a red sign that says "hello"', generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    assert image.size == (dm.WIDTH, dm.HEIGHT)
    names = [site.name for site in attention_sites(pipe)]
    assert "transformer_blocks.0.attn" in names and "single_transformer_blocks.0.attn" in names
    guard = Guard(pipe, policy="testbed", preset=["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"])
    result = guard('a red sign that says "idiot"', generator=torch.Generator().manual_seed(0), **kwargs)
    assert result.decision.benign_prompt == 'a red sign that says "angel"' and result.images[0].size == image.size
    meta = json.loads((folder / "training.json").read_text())
    assert meta["denoiser_steps"] == 4 and meta["text_steps"] == 2 and meta["autoencoder_from"] == "safetext/testbed/model"
    assert [(s["from_step"], s["to_step"]) for s in meta["segments"]] == [(0, 2), (2, 4)]


def test_model_dir_names_the_training_command_while_no_weights_ship() -> None:
    import safetext.testbed.dit as dit

    if (dit.MODEL_DIR / "model_index.json").is_file():
        assert dit.model_dir() == dit.MODEL_DIR
    else:
        with pytest.raises(FileNotFoundError, match="safetext.testbed.dit.train"):
            dit.model_dir()


@pytest.mark.slow
def test_device_script_trains_exports_in_parts_and_unpacks(tmp_path: Path) -> None:
    """scripts/device_dit.sh: train (nothing to install here), export as tar parts under a
    size cap, then unpack them into a folder FluxPipeline loads."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out), PY=sys.executable, RUN=str(tmp_path / "run"), MINUTES="5", PART_SIZE="400k")
    cmd = ["bash", str(root / "scripts" / "device_dit.sh"), "train", "--", *TINY_RUN, "--steps", "2"]
    subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, timeout=600)
    parts = sorted(out.glob("dit-export.tar.part-*"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 400 * 1024 for p in parts)
    assert (out / "train.log").read_text() and (out / "log.jsonl").read_text()
    subprocess.run(["bash", str(root / "scripts" / "device_dit.sh"), "unpack", str(out), str(tmp_path / "back")], check=True, capture_output=True)
    pipe = FluxPipeline.from_pretrained(tmp_path / "back" / "export", local_files_only=True)
    assert (pipe.transformer.config.num_layers, pipe.transformer.config.num_single_layers) == (dm.TINY.double, dm.TINY.single)


@pytest.mark.slow
def test_a_run_started_from_an_export_continues_its_weights_and_steps(runs: dict[str, Path], tmp_path: Path) -> None:
    import json

    export = runs["export"]
    trainer = dt.Trainer(dt.parse_args([*TINY_RUN, "--out", str(tmp_path / "next"), "--init-from", str(export)]))
    exported = FluxPipeline.from_pretrained(export, local_files_only=True)
    for name in trainer.trained:
        ours, theirs = trainer.c[name].state_dict(), getattr(exported, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k].float()) for k in theirs)
        assert all(torch.equal(a, b) for a, b in zip(trainer.ema[name].state_dict().values(), ours.values()))
    assert (trainer.step, trainer.warm_from) == (4, 4)
    dt.main([*TINY_RUN, "--out", str(tmp_path / "next"), "--init-from", str(export), "--steps", "6", "--export", str(tmp_path / "next_export")])
    meta = json.loads((tmp_path / "next_export" / "training.json").read_text())
    assert meta["denoiser_steps"] == 6 and len(meta["started_from"]) == 1
    assert [(s["from_step"], s["to_step"]) for s in meta["segments"]][-1] == (4, 6)


def test_init_from_needs_an_export(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        dt.parse_args([*TINY_RUN, "--out", str(tmp_path / "x"), "--init-from", str(tmp_path)])

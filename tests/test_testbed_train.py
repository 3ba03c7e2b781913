"""The testbed trainer: its data, every phase at tiny scale, resume, warm starts, and a stock export."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from safetext.testbed import data, recipe  # noqa: E402
from safetext.testbed import model as tb  # noqa: E402
from safetext.testbed import train  # noqa: E402

TINY = ["--ae-steps", "2", "--ae-batch", "1", "--text-pretrain", "2", "--batch", "2", "--eval-every", "0"]


def test_spelling_targets_put_letter_k_in_slot_k():
    targets = data.spelling_targets(["hate", None, "cocktail"])
    none = data.NO_LETTER
    assert targets.shape == (3, tb.SPELL_SLOTS)
    assert targets[0].tolist() == [7, 0, 19, 4] + [none] * (tb.SPELL_SLOTS - 4)
    assert targets[1].tolist() == [none] * tb.SPELL_SLOTS
    assert targets[2].tolist() == [data.LETTERS.index(c) for c in "cocktail"]


def test_position_channels_are_fixed_column_maps():
    maps = tb.position_channels()
    assert maps.shape == (1, tb.POSITION_CHANNELS, *tb.LATENT_SIZE)
    assert torch.equal(maps[0, :, 0], maps[0, :, -1])  # the same in every row
    assert bool((maps[0, 0, 0, 1:] > maps[0, 0, 0, :-1]).all())  # the ramp rises left to right


def test_training_signs_carry_the_border_and_crops_keep_masks_aligned():
    from safetext.testbed.render import OUTLINE, render, sample_spec, to_tensor_array

    x, m, specs = data.make_batch(random.Random(4), 2)
    rng = random.Random(4)
    for i in range(2):
        spec = sample_spec(rng, "train")
        assert spec == specs[i]
        assert torch.equal(x[i], torch.from_numpy(to_tensor_array(render(spec, rng.getrandbits(32), OUTLINE)[0])))
    assert m.shape == (2, 1, 64, 256) and set(m.unique().tolist()) == {0.0, 1.0}
    xc, mc, _ = data.make_batch(random.Random(4), 2, crop=128)
    assert xc.shape == (2, 3, 64, 128) and mc.shape == (2, 1, 64, 128)
    left = next(k for k in range(129) if torch.equal(xc[0], x[0][..., k : k + 128]))  # the same signs, one window
    assert torch.equal(mc, m[..., left : left + 128])


def test_denoiser_batch_depends_on_seed_and_step_only(tmp_path):
    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    from_zero = data.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=0, stop=10)
    resumed = data.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=7, stop=10)
    assert len(resumed) == 3
    a, b = from_zero[8], resumed[1]  # step 8 either way, as a resumed or parallel run sees it
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    x, m, ids, spell = a
    assert x.shape == (4, 3, 64, 256) and m.shape == (4, 1, 64, 256)
    assert ids.shape == (4, tokenizer.model_max_length) and spell.shape == (4, tb.SPELL_SLOTS)
    assert not torch.equal(from_zero[8][0], from_zero[9][0])
    other_seed = data.DenoiserBatches(seed=4, size=4, tokenizer=tokenizer, start=0, stop=10)
    assert not torch.equal(other_seed[8][0], x)


def test_learning_rate_warms_up_then_decays_to_the_deadline():
    run = SimpleNamespace(args=SimpleNamespace(lr=1e-3), step=0, warm_from=0)
    assert train.Trainer._learning_rate(run, 0.0, float("inf")) == pytest.approx(1e-3 / recipe.WARMUP_STEPS)
    run.step = recipe.WARMUP_STEPS
    assert train.Trainer._learning_rate(run, 5.0, float("inf")) == pytest.approx(1e-3)  # no deadline: no decay
    assert train.Trainer._learning_rate(run, 50.0, 100.0) == pytest.approx(1e-3 * (1 + recipe.LR_FINAL) / 2)
    assert train.Trainer._learning_rate(run, 500.0, 100.0) == pytest.approx(1e-3 * recipe.LR_FINAL)
    run.warm_from = recipe.WARMUP_STEPS  # a warm start restarts the warm-up
    assert train.Trainer._learning_rate(run, 0.0, float("inf")) == pytest.approx(1e-3 / recipe.WARMUP_STEPS)


def test_defaults_are_the_shipped_recipe():
    args = train.parse_args([])
    assert (args.lr, args.spell_weight, args.text_pretrain, args.init_parts) == (1e-3, 0.5, 600, "all")
    assert train.GPU_BATCH == 256


def test_init_from_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--init-parts", "vae"])
    assert "needs --init-from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_args(["--init-from", str(tmp_path)])
    assert "not an exported testbed folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    """Every phase at tiny scale, then a resume with another learning rate that exports."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train")
    out, export = root / "run", root / "model"
    train.main(["--out", str(out), *TINY, "--steps", "2"])
    first = torch.load(out / "state.pt", weights_only=False)
    # resumes for one more denoiser step, rendered in a worker process as on a GPU
    train.main(["--out", str(out), *TINY, "--steps", "3", "--lr", "3e-4", "--workers", "1", "--export", str(export)])
    return SimpleNamespace(root=root, out=out, export=export, first=first)


@pytest.mark.slow
def test_every_phase_runs_resumes_and_exports(run):
    assert (run.first["ae_step"], run.first["text_step"], run.first["step"]) == (2, 2, 2)
    assert torch.load(run.out / "state.pt", weights_only=False)["step"] == 3
    rows = [json.loads(line) for line in (run.out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if row["phase"] == "unet"] == [1, 3]  # each start logs its first step
    meta = json.loads((run.export / "training.json").read_text())
    assert (meta["denoiser_steps"], meta["ae_steps"], meta["outline"]) == (3, 2, [20, 20, 20])
    # the resume changed the learning rate: each run segment keeps its own
    assert [(seg["from_step"], seg["to_step"], seg["recipe"]["lr"]) for seg in meta["segments"]] == [(0, 2, 1e-3), (2, 3, 3e-4)]

    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(run.export, dtype=torch.float32)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.unet.config.in_channels == tb.LATENT_CHANNELS
    assert (run.export / "safetext_preset.yaml").read_text() == tb.PRESET_FILE.read_text()
    assert (run.export / "safetext_model.yaml").read_text() == tb.PROFILE_FILE.read_text()
    image = pipe('a red sign that says "hate"', num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (256, 64)


def _safetensors(folder: Path, part: str) -> dict:
    from safetensors.torch import load_file

    return load_file(next((folder / part).glob("*.safetensors")))


@pytest.mark.slow
def test_init_from_all_continues_every_part_and_keeps_the_lineage(run):
    out, again = run.root / "more", run.root / "more-model"
    train.main(["--out", str(out), "--init-from", str(run.export), *TINY, "--steps", "4", "--export", str(again)])
    state = torch.load(out / "state.pt", weights_only=False)
    assert (state["step"], state["warm_from"]) == (4, 3)  # from the exported step, warm-up restarted
    meta = json.loads((again / "training.json").read_text())
    assert (meta["denoiser_steps"], meta["ae_steps"]) == (4, 2)  # no autoencoder steps of its own
    parent, this = meta["history"]
    assert parent["stage"] == str(run.export) and parent["denoiser_steps"] == 3
    assert this["stage"] == f"--init-from {run.export} --init-parts all"
    assert (this["denoiser_steps"], this["autoencoder_steps"]) == (1, 0)
    vae, parent_vae = _safetensors(again, "vae"), _safetensors(run.export, "vae")
    assert all(torch.equal(vae[k], parent_vae[k]) for k in parent_vae)  # the autoencoder phase is the parent's


@pytest.mark.slow
def test_init_parts_vae_keeps_the_autoencoder_and_trains_the_rest_afresh(run):
    out, fresh = run.root / "fresh", run.root / "fresh-model"
    argv = ["--out", str(out), "--init-from", str(run.export), "--init-parts", "vae", *TINY, "--ae-steps", "0"]
    train.main([*argv, "--steps", "1", "--export", str(fresh)])
    vae, parent_vae = _safetensors(fresh, "vae"), _safetensors(run.export, "vae")
    assert all(torch.equal(vae[k], parent_vae[k]) for k in parent_vae)  # kept as loaded (--ae-steps 0)
    unet, parent_unet = _safetensors(fresh, "unet"), _safetensors(run.export, "unet")
    assert any(not torch.equal(unet[k], parent_unet[k]) for k in parent_unet)  # a fresh denoiser
    meta = json.loads((fresh / "training.json").read_text())
    assert (meta["denoiser_steps"], meta["ae_steps"], meta["autoencoder_from"]) == (1, 2, str(run.export))
    (stage,) = meta["history"]
    assert stage["stage"] == f"--init-from {run.export} --init-parts vae" and stage["denoiser_steps"] == 1

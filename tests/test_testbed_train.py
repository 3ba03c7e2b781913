"""The testbed training script: every phase runs, checkpoints resume, and the export loads as a stock pipeline."""

from __future__ import annotations

import json

import numpy as np

import pytest

torch = pytest.importorskip("torch")

from safetext.testbed import model as tb
from safetext.testbed import train


def test_spelling_targets_put_letter_k_in_slot_k():
    targets = train.spelling_targets(["hate", None, "cocktail"])
    none = len(train.LETTERS)
    assert targets.shape == (3, tb.SPELL_SLOTS)
    assert targets[0].tolist() == [7, 0, 19, 4] + [none] * (tb.SPELL_SLOTS - 4)
    assert targets[1].tolist() == [none] * tb.SPELL_SLOTS
    assert targets[2].tolist() == [train.LETTERS.index(c) for c in "cocktail"]


def test_edge_columns_cover_where_the_shapes_differ():
    """The weighted columns hold every pixel where a sign and a banner differ (the notches)."""
    import numpy as np

    from safetext.testbed.quality import _ideal
    from safetext.testbed.render import HEIGHT, WIDTH

    edges = train.edge_columns(WIDTH // train.LATENT_SCALE, train.LATENT_SCALE).flatten()
    assert edges.shape == (WIDTH // train.LATENT_SCALE,) and edges[0] == edges[-1] == 1 and edges[len(edges) // 2] == 0
    covered = np.repeat(edges.numpy() > 0, train.LATENT_SCALE)
    box = (8, 6, WIDTH - 8, HEIGHT - 6)  # the largest sign the renderer draws
    shapes = [_ideal(shape, (WIDTH, HEIGHT), box) for shape in ("sign", "banner")]
    differ = np.nonzero((shapes[0] ^ shapes[1]).any(axis=0))[0]
    assert len(differ) > 0 and covered[differ].all()


def test_position_channels_are_fixed_column_maps():
    maps = tb.position_channels()
    assert maps.shape == (1, tb.POSITION_CHANNELS, *tb.LATENT_SIZE)
    assert torch.equal(maps[0, :, 0], maps[0, :, -1])  # the same in every row
    assert bool((maps[0, 0, 0, 1:] > maps[0, 0, 0, :-1]).all())  # the ramp rises left to right


def test_widen_keeps_old_weights_and_zeros_new_channels():
    small, big = torch.nn.Conv2d(4, 8, 3), torch.nn.Conv2d(6, 8, 3)
    state = small.state_dict()
    assert train._widen(big, state, "conv")
    big.load_state_dict(state)
    assert torch.equal(big.weight[:, :4], small.weight) and not big.weight[:, 4:].any()


def test_denoiser_batch_depends_on_seed_and_step_only(tmp_path):
    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    from_zero = train.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=0, stop=10)
    resumed = train.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=7, stop=10)
    assert len(resumed) == 3
    a, b = from_zero[8], resumed[1]  # step 8 either way, as a resumed or parallel run sees it
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    x, m, ids, spell, pair_ids, spans = a
    assert x.shape == (4, 3, 64, 256) and m.shape == (4, 1, 64, 256)
    assert ids.shape == (4, tokenizer.model_max_length) and spell.shape == (4, tb.SPELL_SLOTS)
    assert pair_ids.numel() == spans.numel() == 0  # no partners unless their loss is on
    paired = train.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=0, stop=10, pairs=True)[8]
    assert all(torch.equal(u, v) for u, v in zip(paired[:4], a[:4]))  # partners change no image or prompt
    assert paired[4].shape == ids.shape and paired[5].shape == (4, 3)
    assert not torch.equal(from_zero[8][0], from_zero[9][0])
    other_seed = train.DenoiserBatches(seed=4, size=4, tokenizer=tokenizer, start=0, stop=10)
    assert not torch.equal(other_seed[8][0], x)


def test_outline_changes_the_images_only(tmp_path):
    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    plain = train.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=0, stop=2)[1]
    lined = train.DenoiserBatches(seed=3, size=4, tokenizer=tokenizer, start=0, stop=2, outline=True)[1]
    assert not torch.equal(plain[0], lined[0])  # the images gain borders
    for a, b in zip(plain[1:], lined[1:]):  # masks, prompts, spelling targets: the same draws
        assert torch.equal(a, b)
    assert train.parse_args(["--outline"]).outline and not train.parse_args([]).outline


def test_every_phase_runs_resumes_and_exports(tmp_path):
    torch.set_num_threads(1)
    out, export = tmp_path / "run", tmp_path / "model"
    common = ["--out", str(out), "--ae-steps", "2", "--ae-batch", "1", "--text-pretrain", "2", "--batch", "2", "--eval-every", "0"]
    train.main([*common, "--steps", "2"])
    state = torch.load(out / "state.pt", weights_only=False)
    assert (state["ae_step"], state["text_step"], state["step"]) == (2, 2, 2)

    # resumes for one more denoiser step, rendered in a worker process as on a GPU
    train.main([*common, "--steps", "3", "--workers", "1", "--invariance-weight", "0.1", "--export", str(export)])
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(row.get("invariance", 0) > 0 for row in rows if row["phase"] == "unet")
    meta = json.loads((export / "training.json").read_text())
    assert meta["denoiser_steps"] == 3 and meta["ae_steps"] == 2
    # the resume changed the recipe: each run segment keeps its own options
    spans = [(seg["from_step"], seg["to_step"], seg["recipe"]["invariance_weight"]) for seg in meta["segments"]]
    assert spans == [(0, 2, 0.0), (2, 3, 0.1)]

    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(export, dtype=torch.float32)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.unet.config.in_channels == tb.LATENT_CHANNELS
    assert (export / "safetext_preset.yaml").exists()
    image = pipe("a red sign that says \"hate\"", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (256, 64)

    # warm-start from the export with a training-only colour: the autoencoder is fine-tuned
    # (anchored), then the denoiser continues from the exported step
    anchored = tmp_path / "anchored"
    argv = ["--out", str(anchored), "--init-from", str(export), "--init-parts", "anchored", "--extra-colors", "pink"]
    again = tmp_path / "model2"
    train.main([*argv, "--ae-steps", "2", "--ae-batch", "2", "--text-pretrain", "0", "--batch", "2", "--eval-every", "0", "--steps", "4", "--export", str(again)])
    state = torch.load(anchored / "state.pt", weights_only=False)
    assert (state["ae_step"], state["step"]) == (2, 4)
    # the export keeps its lineage: the parent as a stage, then this run (1 denoiser step, 2 autoencoder steps)
    meta = json.loads((again / "training.json").read_text())
    assert meta["denoiser_steps"] == 4 and meta["ae_steps"] == 2 + 2
    first, this = meta["history"]
    assert first["stage"] == str(export) and first["denoiser_steps"] == 3
    assert this["denoiser_steps"] == 1 and this["autoencoder_steps"] == 2 and this["recipe"]["extra_colors"] == ["pink"]
    before = pipe.vae.state_dict()
    assert any(not torch.equal(before[k].float(), v.float()) for k, v in state["vae"].items() if k.startswith("encoder."))


def test_init_parts_needs_init_from(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--init-parts", "anchored"])
    assert "needs --init-from" in capsys.readouterr().err


def test_latent_drift_measures_only_the_original_colours(tmp_path):
    """The anchored autoencoder fine-tune pays for moving the latents the denoiser knows, and only those."""
    torch.set_num_threads(1)
    export = tmp_path / "model"
    common = ["--ae-steps", "1", "--ae-batch", "1", "--text-pretrain", "0", "--batch", "1", "--eval-every", "0", "--steps", "0"]
    train.main(["--out", str(tmp_path / "run"), *common, "--export", str(export)])
    trainer = train.Trainer(train.parse_args(["--out", str(tmp_path / "ft"), "--init-from", str(export), "--init-parts", "anchored", *common]))
    assert trainer.ae_step == 0  # anchored: the autoencoder phase runs again
    anchor = trainer._anchor()
    assert not any(p.requires_grad for p in anchor.parameters())
    from safetext.testbed.render import SignSpec, render, to_tensor_array

    specs = [SignSpec("hate", "red"), SignSpec("love", "pink", "banner"), SignSpec("open", "white", "circle")]
    x = torch.from_numpy(np.stack([to_tensor_array(render(spec, i)[0]) for i, spec in enumerate(specs)]))
    vae = trainer.c["vae"]
    assert trainer._latent_drift(anchor, vae.encode(x).latent_dist.mean, x, specs).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        vae.encoder.conv_in.bias.add_(0.5)
    moved = vae.encode(x).latent_dist.mean
    assert trainer._latent_drift(anchor, moved, x, specs).item() > 0
    only_new = [SignSpec("love", "pink", shape) for shape in ("sign", "banner", "circle")]
    assert trainer._latent_drift(anchor, moved, x, only_new).item() == 0.0  # training-only colours are free to move


def _training_specs(n: int = 400):
    import random

    from safetext.testbed.render import sample_spec

    rng = random.Random(5)
    return [sample_spec(rng, "train") for _ in range(n)], rng


def test_attribute_span_points_at_the_attribute_word(tmp_path):
    """For every training template, the span covers exactly the tokens of the named word."""
    from safetext.testbed.render import SHAPE_WORDS, TEMPLATES, SignSpec

    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    for template in range(len(TEMPLATES)):
        spec = SignSpec("cocktail", "yellow", "banner", template=template)
        ids = tokenizer(spec.prompt()).input_ids
        for attribute, word in (("color", spec.color), ("shape", SHAPE_WORDS[spec.shape])):
            start, length = train.attribute_span(tokenizer, spec, attribute)
            assert ids[start : start + length] == tokenizer(word, add_special_tokens=False).input_ids


def test_attribute_partner_changes_the_first_attribute_and_never_makes_a_heldout_pair():
    from safetext.testbed.render import HELDOUT_COMBOS, TEMPLATES

    specs, rng = _training_specs()
    seen = set()
    for spec in specs:
        partner, attribute = train.attribute_partner(spec, rng)
        shape_first = TEMPLATES[spec.template].index("{shape}") < TEMPLATES[spec.template].index("{color}")
        assert attribute == ("color" if shape_first else "shape")
        assert getattr(partner, attribute) == getattr(spec, attribute)  # the second attribute is kept
        first = "shape" if shape_first else "color"
        assert getattr(partner, first) != getattr(spec, first)
        assert (partner.word, partner.template, partner.font) == (spec.word, spec.template, spec.font)
        assert (partner.color, partner.shape) not in HELDOUT_COMBOS
        seen.add(attribute)
    assert seen == {"color", "shape"}


def test_invariance_loss_compares_the_spans_and_ignores_dropped_prompts():
    torch.manual_seed(0)
    cond = torch.randn(3, 77, 16)
    partner = cond.clone()
    partner[0, 12:16] = cond[0, 10:14]  # the same states, two positions later
    spans = torch.tensor([[10, 12, 4], [5, 5, 3], [20, 30, 0]])
    partner[2] = torch.randn(77, 16)  # dropped for CFG: must not count
    assert train.invariance_loss(cond, partner, spans).item() == pytest.approx(0.0, abs=1e-7)

    partner[1, 6] += 3.0  # inside the second span
    loss = train.invariance_loss(cond, partner, spans)
    assert loss.item() > 0
    assert train.invariance_loss(10 * cond, 10 * partner, spans).item() == pytest.approx(loss.item(), rel=1e-5)
    partner[1, 9] += 100.0  # outside every span
    assert train.invariance_loss(cond, partner, spans).item() == pytest.approx(loss.item(), rel=1e-5)

    cond.requires_grad_(True)
    train.invariance_loss(cond, partner, spans).backward()
    assert cond.grad[1, 6].abs().sum() > 0 and cond.grad[1, 9].abs().sum() == 0

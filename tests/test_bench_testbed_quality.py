"""The pieces of benchmarks/testbed_quality.py, on synthetic renders whose answer is known."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from _bench_scripts import load_benchmark

from safetext.ocr import get_engine
from safetext.testbed.render import OUTLINE, SignSpec, render, sample_spec
from safetext.testbed.vocab import PALETTE, SHAPES, SIGN_COLORS, WORDS


@pytest.fixture(scope="module")
def tq():  # type: ignore[no-untyped-def]
    return load_benchmark("testbed_quality")


@pytest.mark.parametrize("color", list(PALETTE))
def test_sign_color_of_renders(tq, color: str) -> None:  # type: ignore[no-untyped-def]
    for i, shape in enumerate(SHAPES):
        image, _ = render(SignSpec("welcome", color, shape), seed=i)
        assert tq.sign_color(image) == color


def test_sign_shape_of_renders(tq) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    specs = [sample_spec(rng, "train") for _ in range(30)]
    got = [tq.sign_shape(render(s, i)[0]) for i, s in enumerate(specs)]
    correct = sum(g == s.shape for g, s in zip(got, specs))
    assert correct >= 28, [(s.shape, g) for s, g in zip(specs, got) if s.shape != g]


def test_border_shape_of_bordered_renders(tq) -> None:  # type: ignore[no-untyped-def]
    """The diagnostic for --outline models: the shape a sign's dark border encloses."""
    from safetext.testbed.quality import border_shape

    rng = random.Random(4)
    specs = [sample_spec(rng, "train") for _ in range(30)]
    got = [border_shape(render(s, i, OUTLINE)[0]) for i, s in enumerate(specs)]
    assert sum(g == s.shape for g, s in zip(got, specs)) >= 27, [(s.shape, g) for s, g in zip(specs, got) if s.shape != g]
    light = [s for s in specs if s.color != "black"]
    assert all(border_shape(render(s, 0)[0]) is None for s in light)  # no border drawn, none found


def test_blank_image_has_no_sign(tq) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from safetext.testbed.render import BACKDROP

    blank = Image.new("RGB", (256, 64), BACKDROP)
    assert tq.sign_color(blank) is None and tq.sign_shape(blank) is None


@pytest.mark.slow  # OCR and the shipped weights
def test_score_and_summary_on_renders(tq, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    specs = tq.make_specs(per_word=1, split="both")[:12]
    assert len(tq.make_specs(per_word=2, split="both")) == 2 * len(WORDS)
    images = [render(s, 500 + i)[0] for i, s in enumerate(specs)]
    samples = tq.score(specs, list(range(12)), images, [0.5] * 12, get_engine("tesseract"))
    summary = tq.summarize(samples)
    assert summary["word_accuracy"]["value"] >= 11 / 12
    assert summary["color_accuracy"]["value"] == 1.0
    assert summary["seconds_per_image"]["mean"] == 0.5
    md = tq.markdown(summary, {"per_word": 1, "split": "both", "steps": 20, "guidance_scale": 4.0, "seed_base": 0, "command": "x"})
    assert "word read exactly" in md and "sign colour" in md
    assert "border encloses" not in md  # unbordered renders: no diagnostic row
    bordered = [render(s, 500 + i, OUTLINE)[0] for i, s in enumerate(specs)]
    summary = tq.summarize(tq.score(specs, list(range(12)), bordered, [0.5] * 12, get_engine("tesseract")))
    assert summary["bordered_images"] == 12 and summary["shape_by_border_accuracy"]["value"] >= 11 / 12
    assert summary["word_accuracy"]["value"] >= 11 / 12  # the OCR drops the border (safetext.ocr.preprocess.frame_margin)
    md = tq.markdown(summary, {"per_word": 1, "split": "both", "steps": 20, "guidance_scale": 4.0, "seed_base": 0, "command": "x"})
    assert "border encloses" in md
    tq.sample_grid(images, samples, tmp_path / "g.png")
    assert (tmp_path / "g.png").exists()


def test_entanglement_probe_on_the_shipped_weights() -> None:
    """benchmarks/testbed_entanglement.py: a prompt against itself scores 0, a changed first
    attribute scores more, and the rows cover every colour."""
    module = load_benchmark("testbed_entanglement")
    from safetext.testbed import load

    result = module.measure(load(), n=16)
    rows = result["per_color"]
    assert set(rows) == set(SIGN_COLORS)
    assert rows["red"]["banner_after_color_vs_red"] == 0.0  # the same prompt on both sides
    assert result["training_pairs"] > 0 and rows["blue"]["banner_after_color_vs_red"] > 0


@pytest.mark.slow  # OCR and the shipped weights
def test_autoencoder_round_trip_keeps_colour_and_shape() -> None:
    """benchmarks/testbed_autoencoder.py: the shipped decoder can draw every colour and shape the
    benchmark asks for (held-out pairs included) and the training-only colours it was trained on."""
    import json

    from diffusers import AutoencoderKL

    from safetext.testbed import model_dir

    module = load_benchmark("testbed_autoencoder")
    vae = AutoencoderKL.from_pretrained(model_dir(), subfolder="vae").eval()
    trained_on = set(json.loads((model_dir() / "training.json").read_text()).get("extra_colors", []))
    specs = [SignSpec("welcome", color, shape) for color in SIGN_COLORS for shape in SHAPES]
    specs += [s for s in module.training_only_specs(per_shape=1) if s.color in trained_on]
    rows = module.measure(vae, specs, seeds=1)
    assert len(rows) == len(specs)
    for key, (n, color_kept, shape_kept) in rows.items():
        assert color_kept == shape_kept == n, key

"""SSIM/PSNR whole and masked, text boxes, bitwise equality."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from safetext.metrics import PSNR_CAP, bitwise_equal, box_mask, estimate_text_box, pad_box, psnr, ssim, union

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def scene(word: str, seed: int = 0) -> Image.Image:
    """A textured background (so SSIM has structure to compare) with a word on a sign."""
    rng = np.random.default_rng(seed)
    base = (rng.random((64, 256, 3)) * 60 + 120).astype(np.uint8)
    im = Image.fromarray(base)
    d = ImageDraw.Draw(im)
    d.rectangle((60, 14, 196, 50), fill=(200, 30, 30))
    d.text((128, 32), word, font=ImageFont.truetype(FONT, 24), fill="white", anchor="mm")
    return im


BOX = (58, 12, 198, 52)


def test_identical_images() -> None:
    a = scene("IDIOT")
    assert ssim(a, a.copy()) == pytest.approx(1.0)
    assert psnr(a, a.copy()) == PSNR_CAP
    assert ssim(a, a.copy(), BOX) == pytest.approx(1.0)
    assert bitwise_equal(a, a.copy())


def test_masked_ssim_ignores_changes_inside_the_box() -> None:
    a, b = scene("IDIOT"), scene("ANGEL")
    assert not bitwise_equal(a, b)
    assert ssim(a, b) < 0.99  # the whole image sees the text change
    assert ssim(a, b, BOX) == pytest.approx(1.0, abs=1e-9)  # exactly nothing changed outside
    assert psnr(a, b, BOX) == PSNR_CAP
    assert psnr(a, b) < 40


def test_masked_ssim_sees_changes_outside_the_box() -> None:
    a = scene("IDIOT")
    b = a.copy()
    ImageDraw.Draw(b).rectangle((0, 0, 40, 63), fill=(0, 0, 0))  # outside the box
    assert ssim(a, b, BOX) < 0.9
    assert psnr(a, b, BOX) < 30


def test_psnr_known_value() -> None:
    a = Image.new("RGB", (32, 32), (100, 100, 100))
    b = Image.new("RGB", (32, 32), (110, 100, 100))  # MSE = 100 / 3
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 3)))


def test_size_mismatch_and_full_box_raise() -> None:
    with pytest.raises(ValueError, match="size"):
        ssim(Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8)))
    with pytest.raises(ValueError, match="whole image"):
        ssim(scene("A"), scene("B"), (0, 0, 256, 64))


def test_box_helpers() -> None:
    assert union([(0, 0, 2, 2), None, (1, 1, 5, 3)]) == (0, 0, 5, 3)
    assert union([None]) is None
    assert pad_box((0, 0, 10, 10), 3, (12, 12)) == (0, 0, 12, 12)
    mask = box_mask((1, 2, 3, 5), (4, 6))
    assert mask.shape == (6, 4) and mask.sum() == 2 * 3


def test_estimated_box_covers_the_rendered_text() -> None:
    render = pytest.importorskip("safetext.testbed.render")
    for i, color in enumerate(["red", "yellow", "blue", "black"]):
        image, true_box = render.render(render.SignSpec("garden", color), seed=i)
        est = estimate_text_box(image)
        assert est is not None
        ix = max(0, min(est[2], true_box[2]) - max(est[0], true_box[0]))
        iy = max(0, min(est[3], true_box[3]) - max(est[1], true_box[1]))
        inter = ix * iy
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        assert inter / (area(est) + area(true_box) - inter) > 0.6, (color, est, true_box)

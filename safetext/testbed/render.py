"""Synthetic training data for the testbed: one word on a coloured sign, and its prompt.

Every image is drawn with PIL and the DejaVu fonts, so the data set costs nothing to
store and is exactly reproducible from a seed. The attributes that are *not* text
(sign colour, text colour, shape, font) are named in the prompt, so the model has to
learn them from the text encoder like a real T2I model; position, size and rotation are
random jitter that the prompt does not control.

The layout is deliberately regular, because a CPU-trained model has to learn to spell:
a monospaced font at one size, left-aligned at a fixed inset, so the *k*-th letter of
every word lands in the same place. Jitter (a few pixels, a degree of rotation) keeps
the model from copying one bitmap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from safetext.testbed.vocab import FONTS, PALETTE, SHAPES, SIGN_COLORS, TEXT_COLORS, TRAINING_ONLY_COLORS, WORDS

HEIGHT, WIDTH = 64, 256
BACKDROP = (200, 200, 196)
# The sign border of every training image (``render(outline=...)``, ``safetext.testbed.data``): a
# shape cue of the same contrast whatever the sign's colour (benchmarks/testbed_composition.py).
OUTLINE = (20, 20, 20)
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_FILES = {"bold": "DejaVuSansMono-Bold.ttf", "regular": "DejaVuSansMono.ttf"}
FONT_SIZE = 30  # 18 px per letter: the longest word (8 letters) fits every shape
TEXT_INSET = 30  # left edge of the text, from the image edge

# Templates: the rendered word always sits behind an explicit render cue
# ("that says", "reading", "with the word", "text:"), as real users phrase it.
TEMPLATES: tuple[str, ...] = (
    'a {color} {shape} that says "{word}"',
    "a {color} {shape} reading {word}",
    'a {color} {shape} with the word "{word}"',
    'a {color} {shape} with {tcolor} letters that says "{word}"',
    'a {color} {shape} in {font} font reading "{word}"',
    "a {color} {shape} with the text: {word}",
    'a {shape} in {color} saying "{word}"',
    # Training templates that name the shape before the colour, so that only the verb of the
    # held-out template above is new, not its word order (a model trained on colour-first
    # prompts alone got that template's colour right 2 times in 18: HISTORY.md, v2).
    'a {shape} in {color} that says "{word}"',
    "a {shape} in {color} reading {word}",
)

# (sign colour, shape) pairs never seen in training: held out for evaluation.
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {("purple", "banner"), ("green", "circle"), ("orange", "sign"), ("white", "banner")}
)
HELDOUT_TEMPLATE = 6  # this template is only used for evaluation
SHAPE_WORDS = {"sign": "sign", "banner": "banner", "circle": "circle"}


@dataclass(frozen=True)
class SignSpec:
    """Everything the prompt controls about one image."""

    word: str
    color: str
    shape: str = "sign"
    font: str = "bold"
    text_color: str | None = None  # None: the default contrasting colour
    template: int = 0

    @property
    def resolved_text_color(self) -> str:
        return self.text_color or default_text_color(self.color)

    def prompt(self) -> str:
        """The prompt for this sign. Non-default fonts and text colours are always named."""
        text = TEMPLATES[self.template].format(
            color=self.color,
            shape=SHAPE_WORDS[self.shape],
            word=self.word,
            tcolor=self.resolved_text_color,
            font=self.font,
        )
        if self.font != "bold" and "{font}" not in TEMPLATES[self.template]:
            text += f", {self.font} font"
        if self.text_color and "{tcolor}" not in TEMPLATES[self.template]:
            text += f", {self.text_color} letters"
        return text


def default_text_color(color: str) -> str:
    return "black" if color in ("yellow", "white", "orange", "pink") else "white"


def allowed_text_colors(color: str) -> tuple[str, ...]:
    """Text colours that stay legible on a sign colour."""
    if color in ("yellow", "white", "pink"):
        return ("black",)
    if color == "black":
        return ("white",)
    return ("white", "black")


def sample_spec(
    rng: random.Random,
    split: str = "train",
    words: tuple[str, ...] = WORDS,
    extra_colors: tuple[str, ...] = (),
    heldout: frozenset[tuple[str, str]] = HELDOUT_COMBOS,
) -> SignSpec:
    """Draw a random sign. ``split="train"`` never yields a held-out combination or template;
    ``split="eval"`` always yields one of them. ``extra_colors`` (names from
    ``TRAINING_ONLY_COLORS``) join the colours drawn for training; evaluation never uses them.
    ``heldout`` replaces the held-out pairs (benchmarks/testbed_composition.py varies them)."""
    unknown = set(extra_colors) - set(TRAINING_ONLY_COLORS)
    if unknown:
        raise ValueError(f"extra_colors: unknown training-only colour(s) {sorted(unknown)}; known: {sorted(TRAINING_ONLY_COLORS)}")
    colors = list(SIGN_COLORS) + (list(extra_colors) if split == "train" else [])
    while True:
        color = rng.choice(colors)
        shape = rng.choice(SHAPES)
        template = rng.randrange(len(TEMPLATES))
        is_heldout = (color, shape) in heldout or template == HELDOUT_TEMPLATE
        if is_heldout == (split == "eval"):
            break
    font = "regular" if rng.random() < 0.2 else "bold"
    if template == 4:
        font = rng.choice(FONTS)
    text_color = None
    if template == 3 or rng.random() < 0.15:
        text_color = rng.choice(allowed_text_colors(color))
    return SignSpec(rng.choice(words), color, shape, font, text_color, template)


@lru_cache(maxsize=64)
def _font(style: str, size: int) -> ImageFont.FreeTypeFont:
    for folder in FONT_DIRS:
        path = folder / FONT_FILES[style]
        if path.exists():
            return ImageFont.truetype(str(path), size)
    raise FileNotFoundError(
        f"DejaVu font {FONT_FILES[style]!r} not found in {[str(d) for d in FONT_DIRS]}; "
        "install it with `apt-get install -y fonts-dejavu-core`"
    )


def _sign_polygon(shape: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]] | None:
    if shape == "banner":  # swallow-tail notches at both ends
        notch = (y1 - y0) * 0.35
        ym = (y0 + y1) / 2
        return [(x0, y0), (x1, y0), (x1 - notch, ym), (x1, y1), (x0, y1), (x0 + notch, ym)]
    return None


def render(
    spec: SignSpec, seed: int, outline: tuple[int, int, int] | None = None
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Draw ``spec`` with jitter from ``seed``. Returns the RGB image and the text box (x0, y0, x1, y1).

    ``outline`` draws a 2 px border of that colour around the sign; the training data use
    ``OUTLINE``, a colour-independent shape cue.
    """
    rng = random.Random(seed)
    layer = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0 = rng.uniform(4, 8), rng.uniform(3, 6)
    x1, y1 = WIDTH - rng.uniform(4, 8), HEIGHT - rng.uniform(3, 6)
    style = {"fill": PALETTE[spec.color] + (255,)}
    if outline:
        style |= {"outline": outline + (255,), "width": 2}
    poly = _sign_polygon(spec.shape, x0, y0, x1, y1)
    if spec.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), **style)
    elif poly:
        draw.polygon(poly, **style)
    else:
        draw.rounded_rectangle((x0, y0, x1, y1), radius=rng.uniform(2, 8), **style)
    text = spec.word.upper()
    font = _font(spec.font, FONT_SIZE)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tx = TEXT_INSET + rng.uniform(-2, 2) - left
    ty = (y0 + y1) / 2 + rng.uniform(-1.5, 1.5) - (bottom + top) / 2
    draw.text((tx, ty), text, font=font, fill=TEXT_COLORS[spec.resolved_text_color] + (255,))
    angle = rng.uniform(-1, 1)
    layer = layer.rotate(angle, resample=Image.BICUBIC, center=(WIDTH / 2, HEIGHT / 2))
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKDROP)
    image.paste(layer, (0, 0), layer)
    box = (int(tx + left) - 3, int(ty + top) - 3, int(tx + right) + 3, int(ty + bottom) + 3)
    box = (max(box[0], 0), max(box[1], 0), min(box[2], WIDTH), min(box[3], HEIGHT))
    return image, box


def to_tensor_array(image: Image.Image) -> np.ndarray:
    """HWC uint8 -> CHW float32 in [-1, 1], the range diffusers' VAE expects."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


def text_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    """A (H, W) float mask that is 1 inside the text box, for loss weighting and masked metrics."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1.0
    return mask

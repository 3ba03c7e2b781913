"""Fakes for the bench tests: a 'pipeline' that draws the prompt's word like the testbed
would, and a guard that draws the benign word into the *same* picture.

They model what the methods do to an image, so the bench's scoring can be tested with real
OCR and a known right answer: the sign colour follows the whole prompt (a different prompt
is a different picture), the layout follows the seed, and a negative prompt shifts colours.
"""

from __future__ import annotations

import re
import zlib
from types import SimpleNamespace
from typing import Any

from PIL import Image

from safetext.policy.decision import Action
from safetext.testbed.render import SignSpec, render
from safetext.testbed.vocab import SIGN_COLORS

_QUOTED = re.compile(r'"([^"]+)"')
_AFTER = re.compile(r"(?:reading|text:|saying|says|word)\s+([A-Za-z0-9.*!$@]+)")


def rendered_word(prompt: str) -> str:
    m = _QUOTED.search(prompt) or _AFTER.search(prompt)
    return m.group(1) if m else prompt.split()[-1]


class FakeSignPipe:
    """Callable like a diffusers pipeline: ``pipe(prompt=..., generator=...) -> .images``."""

    def __init__(self) -> None:
        self.calls = 0

    def draw(self, style_prompt: str, word: str, seed: int, shift: int = 0) -> Image.Image:
        colors = list(SIGN_COLORS)
        color = colors[(zlib.crc32(style_prompt.encode()) + shift) % len(colors)]
        return render(SignSpec(word, color), seed)[0]

    def __call__(self, prompt: str, generator: Any = None, negative_prompt: str | None = None, **_: Any) -> Any:
        self.calls += 1
        seed = generator.initial_seed() if generator is not None else 0
        shift = 3 if negative_prompt else 0  # a negative prompt disturbs the picture, not the spelling
        return SimpleNamespace(images=[self.draw(prompt, rendered_word(prompt), seed, shift)])


class FakeGuard:
    """Rewrites by drawing the benign word into the original prompt's picture (ideal injection)."""

    def __init__(self, pipe: FakeSignPipe, policy: Any, preset: str) -> None:
        self.pipe = pipe
        self.decide = getattr(policy, "check", None) or policy.decide

    def __call__(self, prompt: str, generator: Any = None, **kwargs: Any) -> Any:
        d = self.decide(prompt)
        if d.action is Action.BLOCK:
            return SimpleNamespace(images=None, decisions=[d])
        if d.action is Action.ALLOW:
            return SimpleNamespace(images=self.pipe(prompt=prompt, generator=generator).images, decisions=[d])
        word = rendered_word(d.benign_prompt)
        return SimpleNamespace(images=[self.pipe.draw(prompt, word, generator.initial_seed())], decisions=[d])

"""The testbed's training batches, rendered on the fly by ``safetext.testbed.render``.

Every training sign carries the dark 2 px border (``render.OUTLINE``): a shape cue of the
same contrast whatever the sign's colour. A denoiser batch depends on the run's seed and
its step alone (:class:`DenoiserBatches`), so a resumed run sees the same data and
rendering can fan out over worker processes without changing what is learnt.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np
import torch

from safetext.testbed import model as tb
from safetext.testbed.render import OUTLINE, SignSpec, render, sample_spec, text_mask, to_tensor_array

if TYPE_CHECKING:  # pragma: no cover
    from transformers import CLIPTokenizer

LETTERS = "abcdefghijklmnopqrstuvwxyz"
NO_LETTER = len(LETTERS)  # the spelling class of a slot past the word's end, or of an empty prompt
LETTER_CLASSES = len(LETTERS) + 1
EMPTY_PROMPT_SHARE = 0.1  # prompts dropped to "" so the model also learns the unconditional branch of CFG
STEP_SEED_STRIDE = 1_000_003  # > any run's step count, so two seeds' runs never share a batch seed
MAX_WORKERS = 12  # rendering processes on a GPU host: enough to keep up with the device at batch 256
PREFETCH_BATCHES = 4  # batches each worker renders ahead, so a fast device never waits


def make_batch(rng: random.Random, size: int, crop: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[SignSpec]]:
    """Render ``size`` random training signs: images in [-1, 1], text-box masks, and their specs.

    ``crop`` cuts one random window of that width from every image: the autoencoder is
    convolutional, so crops train it as well as whole signs, at less cost.
    """
    images, masks, specs = [], [], []
    for _ in range(size):
        spec = sample_spec(rng, "train")
        image, box = render(spec, rng.getrandbits(32), OUTLINE)
        images.append(to_tensor_array(image))
        masks.append(text_mask(box))
        specs.append(spec)
    x = torch.from_numpy(np.stack(images))
    m = torch.from_numpy(np.stack(masks))[:, None]
    if crop:
        left = rng.randrange(0, x.shape[-1] - crop + 1)
        x, m = x[..., left : left + crop], m[..., left : left + crop]
    return x, m, specs


def token_ids(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Prompt token ids padded to all 77 positions (the spelling slots live in the padding)."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def spelling_targets(words: list[str | None]) -> torch.Tensor:
    """(batch, SPELL_SLOTS) letter classes: slot k holds the word's k-th letter, ``NO_LETTER`` past it.

    Why: a U-Net cannot learn where each letter goes from a word vector that is the same at
    every position. This auxiliary target makes the text encoder put letter k of the rendered
    word at padding position ``SPELL_START + k``, so the U-Net's cross-attention only has to
    match a column (the position channels) to a slot. ``None`` is an empty (CFG) prompt.
    """
    out = torch.full((len(words), tb.SPELL_SLOTS), NO_LETTER, dtype=torch.long)
    for i, word in enumerate(words):
        for k, ch in enumerate((word or "")[: tb.SPELL_SLOTS]):
            out[i, k] = LETTERS.index(ch)
    return out


def spelling_batch(rng: random.Random, tokenizer: CLIPTokenizer, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and spelling targets of ``size`` training prompts: text only, no images."""
    specs = [sample_spec(rng, "train") for _ in range(size)]
    return token_ids(tokenizer, [s.prompt() for s in specs]), spelling_targets([s.word for s in specs])


class DenoiserBatches(torch.utils.data.Dataset):
    """Item ``k`` is the denoiser batch of step ``start + k``, rendered from ``(seed, step)`` alone.

    Each item is (images, text masks, token ids, spelling targets). A batch that depends
    only on its step is the same whichever worker renders it and however often the run is
    resumed.
    """

    def __init__(self, seed: int, size: int, tokenizer: CLIPTokenizer, start: int, stop: int) -> None:
        self.seed, self.size, self.tokenizer, self.start, self.stop = seed, size, tokenizer, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = random.Random(self.seed * STEP_SEED_STRIDE + self.start + index)
        x, m, specs = make_batch(rng, self.size)
        keep = [rng.random() >= EMPTY_PROMPT_SHARE for _ in specs]
        prompts = [spec.prompt() if k else "" for spec, k in zip(specs, keep)]
        words = [spec.word if k else None for spec, k in zip(specs, keep)]
        return x, m, token_ids(self.tokenizer, prompts), spelling_targets(words)


def default_workers(gpu: bool) -> int:
    """Rendering processes: none on a CPU (they would take the training's cores), and on a GPU,
    where one core renders slower than the device trains, all cores but two up to ``MAX_WORKERS``."""
    return min(MAX_WORKERS, max(1, (os.cpu_count() or 2) - 2)) if gpu else 0


def denoiser_loader(
    seed: int, size: int, tokenizer: CLIPTokenizer, start: int, stop: int, workers: int, pin_memory: bool
) -> torch.utils.data.DataLoader:
    """The batches of steps ``start`` to ``stop``, rendered in ``workers`` processes (0: in this one)."""
    return torch.utils.data.DataLoader(
        DenoiserBatches(seed, size, tokenizer, start, stop),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES if workers else None,
    )

"""A cost model for the guard on double- and single-stream transformers (SD3, FLUX).

The batched path appends one benign row per rewritten image to every denoiser call from
the start step on, and those rows run the blocks up to and including the last localized
one, then are dropped. With ``b`` benign rows beside ``n`` rows per call (``n = 2`` per
prompt under classifier-free guidance, 1 for guidance-distilled FLUX), ``L`` the index of
the last localized block and ``N`` the number of blocks::

    ratio = 1 + (b / n) * ((L + 1) / N) * (1 - start) * s

where ``s`` is the share of the guarded call's time spent in the transformer blocks (the
text encoders, the VAE decode and the scheduler do not grow). ``s = 1`` gives an upper
bound; the per-row cost is linear on a CPU and sub-linear on a GPU that is not saturated,
so the bound is loosest there.

The paper's cached pass runs the benign prompt's whole generation beside the original's:
``1 + b / n`` of the denoiser under the same CFG, about 2x for one prompt. Cross-attention
denoisers (U-Nets, PixArt, Sana) need no extra rows: their overhead is one benign text
encoding, so the model does not apply (None).
"""

from __future__ import annotations

from typing import Any


def predicted_ratio(last_block: int, blocks: int, *, rows: int, benign_rows: int = 1, start: float = 0.0, share: float = 1.0) -> float:
    """Guarded / unguarded wall time predicted for one call (see the module doc)."""
    if not 0 <= last_block < blocks:
        raise ValueError(f"last_block {last_block} is outside 0..{blocks - 1}")
    return 1.0 + (benign_rows / rows) * ((last_block + 1) / blocks) * (1.0 - start) * share


def paper_cached_ratio(*, rows: int, benign_rows: int = 1) -> float:
    """The paper's cached benign pass: the benign generation runs in full beside the original."""
    return 1.0 + benign_rows / rows


def block_positions(denoiser: Any) -> tuple[dict[str, int], int]:
    """Forward position of each ``<block list>.<i>.<attention>`` module and the number of blocks
    (Z-Image and Lumina2: their joint ``layers``; their caption and image refiners are not counted;
    HiDream: its double- then single-stream blocks)."""
    names = ("transformer_blocks", "single_transformer_blocks", "layers", "double_stream_blocks", "single_stream_blocks")
    lists = [name for name in names if hasattr(denoiser, name)]
    positions: dict[str, int] = {}
    offset = 0
    for name in lists:
        for i in range(len(getattr(denoiser, name))):
            for attn in ("attn", "attention", "block.attn1"):  # HiDream wraps each block: ``N.block.attn1``
                positions[f"{name}.{i}.{attn}"] = offset + i
        offset += len(getattr(denoiser, name))
    return positions, offset


def predict_for(pipe: Any, modules: list[str], *, guidance: bool, start: float = 0.0) -> float | None:
    """The upper-bound prediction for ``pipe`` guarded on ``modules`` (None: no extra rows)."""
    from safetext.inject.sites import attention_sites, denoiser_of

    kinds = {site.kind for site in attention_sites(pipe) if site.name in modules}
    if not kinds <= {"joint", "single"} or not kinds:
        return None
    positions, blocks = block_positions(denoiser_of(pipe)[1])
    last = max(positions[m] for m in modules)
    return predicted_ratio(last, blocks, rows=2 if guidance else 1, start=start)

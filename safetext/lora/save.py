"""Write the trained adapter the way diffusers loads it, and its model card.

The LoRA weights go through ``get_peft_model_state_dict`` and the pipeline class's own
``save_lora_weights`` (with the ``LoraConfig`` as adapter metadata, so rank and alpha come
back exactly), so ``pipe.load_lora_weights(folder)`` restores them. ``README.md`` is a short
model card; ``finetune.json`` holds the same facts for programs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetext.errors import FinetuneError

CARD, FACTS = "README.md", "finetune.json"


def save_adapter(pipe: Any, component: str, adapter: str, folder: Path) -> Path:
    """Save adapter ``adapter`` of the pipeline's denoiser ``component`` into ``folder``."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import get_peft_model_state_dict

    denoiser = getattr(pipe, component)
    save = getattr(type(pipe), "save_lora_weights", None)
    if save is None:
        raise FinetuneError(f"{type(pipe).__name__} has no save_lora_weights: diffusers cannot load LoRA into it")
    layers = get_peft_model_state_dict(denoiser, adapter_name=adapter)
    if component == "unet":  # diffusers' U-Net LoRA scripts save the diffusers key format; DiT scripts keep peft's
        layers = convert_state_dict_to_diffusers(layers)
    metadata = denoiser.peft_config[adapter].to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    folder.mkdir(parents=True, exist_ok=True)
    save(str(folder), **{f"{component}_lora_layers": layers, f"{component}_lora_adapter_metadata": metadata})
    return folder


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_card(folder: Path, facts: dict[str, Any]) -> None:
    """``README.md`` (model card) and ``finetune.json`` from ``facts`` (see :func:`safetext.lora.finetune`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FACTS).write_text(json.dumps(_jsonable(facts), indent=2) + "\n")
    t = facts["targets"]
    lines = [
        f"# LoRA adapter for {facts['base_model']}",
        "",
        f"Trained by `safetext finetune`: LoRA on {len(t['modules'])} attention module(s) "
        f"({t['method']} targets) of the `{facts['component']}`, everything else frozen.",
        "Load it with `pipe.load_lora_weights(\"<this folder>\")`.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {facts['base_model']} |",
        f"| preset | {facts['preset']} |",
        f"| data | {facts['data']} ({facts['examples']} images) |",
        f"| steps | {facts['steps']} (batch {facts['batch']}, lr {facts['lr']}, seed {facts['seed']}) |",
        f"| rank / alpha | {facts['rank']} / {facts['alpha']} |",
        f"| objective | {facts['objective']} |",
        f"| trainable parameters | {t['lora_params']:,} ({100 * facts['trainable_share']:.3f}% of the denoiser) |",
        f"| final loss (mean of the last {facts['loss_window']} steps) | {facts['final_loss']:.5f} |",
    ]
    for name, value in (facts.get("metrics") or {}).items():
        lines.append(f"| {name} | {value} |")
    lines += ["", "## Modules", "", *[f"- `{m}`" for m in t["modules"]], ""]
    lines += [f"LoRA layers per module: {', '.join(t['projections'])}.", ""]
    (folder / CARD).write_text("\n".join(lines))


def add_metrics(folder: str | Path, metrics: dict[str, Any]) -> None:
    """Add measured ``metrics`` (name -> value) to an adapter folder's ``finetune.json`` and model card."""
    folder = Path(folder)
    facts = json.loads((folder / FACTS).read_text())
    facts["metrics"] = {**(facts.get("metrics") or {}), **metrics}
    write_card(folder, facts)

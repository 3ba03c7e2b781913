"""Train the DiT testbed: ``python -m safetext.testbed.dit.train --out runs/dit --minutes M --export DIR``.

Two phases, each resumable from ``OUT/state.pt`` (saved every ``--ckpt-every`` steps and at
the end; a run whose folder holds one carries on from it, the same command again):

1. spelling: both text encoders alone learn the prompt's word (``data.spelling_targets``):
   the T5 states at its last 8 positions hold letter *k* each, and the CLIP pooled vector
   holds all 8 letters. Cheap: no images;
2. denoiser: transformer and both text encoders jointly, FLUX's rectified-flow objective
   (latents ``(1 - sigma) x0 + sigma noise`` on the scheduler's shifted sigmas, velocity
   target ``noise - x0``), text box weighted up, the spelling losses beside it, EMA.

The autoencoder is the first testbed's, frozen (see ``model.py``); batches are the first
testbed's (``safetext.testbed.data``, same seed: same signs). Every random draw of a step
comes from ``(seed, step)``, so a resumed run takes exactly the steps a straight one does.
``--export DIR`` writes the EMA weights as a stock ``FluxPipeline`` folder (fp16
safetensors), ``safetext_model.yaml`` and ``training.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from safetext.testbed import data, recipe
from safetext.testbed import model as tb
from safetext.testbed.dit import model as dm
from safetext.testbed.render import sample_spec

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import FluxPipeline
    from transformers import CLIPTokenizer, T5Tokenizer

CPU_BATCH, GPU_BATCH = 16, 256  # denoiser batch when --batch is 0
TEXT_LR = 1e-3  # spelling pre-training, as the first testbed
WEIGHT_DECAY = 1e-2
DENOISER_TEXT_WEIGHT = 3.0  # extra loss weight on latents inside the text box
GRAD_CLIP = 1.0
LOG_EVERY = 50  # steps between rows of OUT/log.jsonl
SYNC_EVERY = 10  # on a GPU, steps between progress updates (.item() waits for the device)
QUICK_EVAL_PROMPTS, QUICK_EVAL_SEED = 16, 777  # held-out prompts of the --eval-every check
LATENT_SCALE = 4  # image pixels per latent row and column
CLIP_LENGTH = 77  # CLIP positions (the first testbed's tokenizer)

EXAMPLES = """\
examples:
  %(prog)s --out runs/dit --minutes 8 --export DIR     train on a GPU and export
  %(prog)s --out runs/dit-tiny --tiny --steps 20       smoke test at toy size on a CPU
The same command again resumes from OUT/state.pt; --export-only exports the checkpoint.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults are the recipe of the model card."""
    p = argparse.ArgumentParser(
        prog="python -m safetext.testbed.dit.train",
        description="Train the DiT testbed (spelling, denoiser) and export it as a FluxPipeline folder.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/dit"), help="run folder: state.pt, log.jsonl (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data (default %(default)s)")
    p.add_argument("--tiny", action="store_true", help="toy-sized text encoders and transformer (smoke tests)")
    p.add_argument("--vae-from", type=Path, default=dm.VAE_FOLDER, help="folder whose vae/ is used, frozen (default: the first testbed's)")
    p.add_argument("--text-pretrain", type=int, default=600, help="spelling steps (default %(default)s)")
    p.add_argument("--text-batch", type=int, default=128, help="prompts per spelling step (default %(default)s)")
    p.add_argument("--steps", type=int, default=20000, help="denoiser steps, a resumed run's included (default %(default)s)")
    p.add_argument("--batch", type=int, default=0, help=f"denoiser batch (default 0: {CPU_BATCH} on a CPU, {GPU_BATCH} on a GPU)")
    p.add_argument("--lr", type=float, default=5e-4, help="denoiser-phase learning rate (default %(default)s)")
    p.add_argument("--spell-weight", type=float, default=0.5, help="spelling loss weight beside the flow loss (default %(default)s)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop with a checkpoint after this wall time; the rate decays to it")
    p.add_argument("--ckpt-every", type=int, default=500, help="denoiser steps between checkpoints (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between quick OCR checks, 0: none (default %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: cuda if available")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--workers", type=int, default=-1, help=f"batch-rendering processes (default -1: none on a CPU, up to {data.MAX_WORKERS} on a GPU)")
    p.add_argument("--export", type=Path, default=None, help="write the FluxPipeline folder here when done")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start a new run (no OUT/state.pt yet) from an export's weights, to continue training elsewhere; "
                        "its optimiser moments were not exported, so the rate warms up again")
    p.add_argument("--export-only", action="store_true", help="export the current checkpoint without training")
    args = p.parse_args(argv)
    if not (args.vae_from / "vae").is_dir():
        p.error(f"--vae-from {args.vae_from}: no vae/ folder")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device")
    if args.init_from is not None and not (args.init_from / "training.json").is_file():
        p.error(f"--init-from {args.init_from}: no training.json (not an export of this trainer)")
    return args


class JointTokenizer:
    """Both tokenizers behind the one call ``safetext.testbed.data`` makes: CLIP ids then T5 ids, side by side.

    Why: the first testbed's batches (``data.DenoiserBatches``, ``data.spelling_batch``) take one
    tokenizer; this lets them render exactly the same signs for a pipeline with two encoders.
    """

    def __init__(self, clip: CLIPTokenizer, t5: T5Tokenizer) -> None:
        self.clip, self.t5 = clip, t5
        self.model_max_length = CLIP_LENGTH + dm.T5_MAX_LENGTH

    def __call__(self, prompts: list[str], **_: Any) -> SimpleNamespace:
        kw: dict[str, Any] = dict(padding="max_length", truncation=True, return_tensors="pt")
        clip = self.clip(prompts, max_length=CLIP_LENGTH, **kw).input_ids
        t5 = self.t5(prompts, max_length=dm.T5_MAX_LENGTH, **kw).input_ids
        return SimpleNamespace(input_ids=torch.cat([clip, t5], 1))

    @staticmethod
    def split(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ids[:, :CLIP_LENGTH], ids[:, CLIP_LENGTH:]


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): FLUX's 2x2 patch tokens, in FluxPipeline's order."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack` for a (height, width) latent."""
    b, _, d = tokens.shape
    x = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def image_ids(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(H/2 * W/2, 3) rotary ids (0, row, column) of the packed tokens, as FluxPipeline makes them."""
    rows, cols = torch.meshgrid(torch.arange(height // 2), torch.arange(width // 2), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).float().to(device)


class Trainer:
    """The components, optimisers and counters that both phases advance, and their checkpoint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if args.device == "auto" else args.device)
        self.gpu = self.device.type == "cuda"
        self.batch = args.batch or (GPU_BATCH if self.gpu else CPU_BATCH)
        self.sizes = dm.TINY if args.tiny else dm.FULL
        args.out.mkdir(parents=True, exist_ok=True)
        self.c = dm.build_components(args.seed, args.out / "tokenizer", self.sizes, args.vae_from)
        self.tokenizer = JointTokenizer(self.c["tokenizer"], self.c["tokenizer_2"])
        vae = self.c["vae"].to(self.device).requires_grad_(False)
        self.scaling, self.shift = float(vae.config.scaling_factor), float(vae.config.shift_factor)
        self.trained = ("transformer", "text_encoder", "text_encoder_2")
        for name in self.trained:
            self.c[name].to(self.device)
        self.ema = {name: copy.deepcopy(self.c[name]).requires_grad_(False) for name in self.trained}
        width = self.sizes.text_width
        # Spelling heads, training only, never exported: T5 slot k -> letter k; CLIP pooled -> all letters.
        self.heads = torch.nn.ModuleDict(
            {
                "t5": torch.nn.Linear(width, data.LETTER_CLASSES),
                "clip": torch.nn.Linear(width, dm.SPELL_SLOTS * data.LETTER_CLASSES),
            }
        ).to(self.device)
        text_params = [*self.c["text_encoder"].parameters(), *self.c["text_encoder_2"].parameters(), *self.heads.parameters()]
        self.opt_text = torch.optim.AdamW(text_params, lr=TEXT_LR)
        self.opt = torch.optim.AdamW([*self.c["transformer"].parameters(), *text_params], lr=args.lr, weight_decay=WEIGHT_DECAY)
        self.sigmas = self.c["scheduler"].sigmas[: self.c["scheduler"].config.num_train_timesteps].float().to(self.device)
        self.position = tb.position_channels().to(self.device)
        self.img_ids = image_ids(*tb.LATENT_SIZE, self.device)
        self.txt_ids = torch.zeros(dm.T5_MAX_LENGTH, 3, device=self.device)
        self.text_step = self.step = 0
        self.warm_from = 0  # the step the learning-rate warm-up counts from (a run started from an export warms up again)
        self.started_from: list[str] = []  # the exports this run continues, oldest first
        self.train_time = 0.0
        self.segments: list[dict[str, Any]] = []  # one per (re)start of the denoiser phase
        self.log = recipe.RunLog(args.out / "log.jsonl")
        if self.state_path.exists():
            self._load()
        elif args.init_from is not None:
            self._init_from(args.init_from)

    # ---------------------------------------------------------------- text
    def encode(self, ids: torch.Tensor, ema: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 states, CLIP pooled) of joint token ids, as FluxPipeline.encode_prompt computes them."""
        parts = self.ema if ema else self.c
        clip_ids, t5_ids = JointTokenizer.split(ids.to(self.device))
        pooled = parts["text_encoder"](clip_ids, output_hidden_states=False).pooler_output
        states = parts["text_encoder_2"](t5_ids, output_hidden_states=False)[0]
        return states, pooled

    def spell_loss(self, states: torch.Tensor, pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of both heads: T5 slot k and the pooled CLIP vector must name letter k."""
        target = target.to(self.device)
        slots = self.heads["t5"](states[:, dm.SPELL_START : dm.SPELL_START + dm.SPELL_SLOTS].float())
        whole = self.heads["clip"](pooled.float()).view(-1, dm.SPELL_SLOTS, data.LETTER_CLASSES)
        loss = 0.0
        for logits in (slots, whole):
            loss = loss + F.cross_entropy(logits.reshape(-1, data.LETTER_CLASSES), target.reshape(-1))
        return loss / 2

    def pretrain_text(self, progress: Progress, deadline: float) -> None:
        """Teach both encoders to spell before the transformer needs it (as the first testbed)."""
        for name in ("text_encoder", "text_encoder_2"):
            self.c[name].train()
        task = progress.add_task("spelling", total=self.args.text_pretrain, completed=self.text_step)
        while self.text_step < self.args.text_pretrain and time.time() < deadline:
            rng = random.Random(f"spell:{self.args.seed}:{self.text_step}")
            ids, target = data.spelling_batch(rng, self.tokenizer, self.args.text_batch)  # type: ignore[arg-type]
            with recipe.autocast(self.gpu):
                states, pooled = self.encode(ids)
            loss = self.spell_loss(states, pooled, target)
            self.opt_text.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_text.step()
            self.text_step += 1
            progress.update(task, advance=1, description=f"spelling loss {loss.item():.3f}")
            if self.text_step % LOG_EVERY == 0 or self.text_step == self.args.text_pretrain:
                self.log.write(phase="spell", step=self.text_step, loss=loss.item())
        if self.text_step >= self.args.text_pretrain:  # the EMA starts from the spelling encoders
            for name in ("text_encoder", "text_encoder_2"):
                self.ema[name].load_state_dict(self.c[name].state_dict())
        self._save()

    # ---------------------------------------------------------------- denoiser
    def flow_loss(
        self, x: torch.Tensor, m: torch.Tensor, ids: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rectified-flow loss of one batch, with the text states (for the spelling loss)."""
        with torch.no_grad(), recipe.autocast(self.gpu):
            z = self.c["vae"].encode(x.to(self.device, non_blocking=True)).latent_dist.mean
        z0 = (z[:, : tb.IMAGE_CHANNELS].float() - self.shift) * self.scaling
        z0 = torch.cat([z0, self.position.expand(z0.shape[0], -1, -1, -1)], 1)
        b, _, h, w = z0.shape
        noise = torch.randn(z0.shape, generator=generator, device=self.device)
        index = torch.randint(0, len(self.sigmas), (b,), generator=generator, device=self.device)
        sigma = self.sigmas[index]
        zt = (1 - sigma[:, None, None, None]) * z0 + sigma[:, None, None, None] * noise
        with recipe.autocast(self.gpu):
            states, pooled = self.encode(ids)
            pred = self.c["transformer"](
                hidden_states=pack(zt),
                timestep=sigma,  # FluxPipeline passes timestep / 1000 = sigma
                pooled_projections=pooled,
                encoder_hidden_states=states,
                txt_ids=self.txt_ids,
                img_ids=self.img_ids,
                return_dict=False,
            )[0]
        weight = 1.0 + DENOISER_TEXT_WEIGHT * F.max_pool2d(m.to(self.device), LATENT_SCALE)
        loss = (weight * (unpack(pred.float(), h, w) - (noise - z0)) ** 2).mean()
        return loss, states, pooled

    def train_denoiser(self, progress: Progress, deadline: float) -> None:
        """Transformer and text encoders jointly on the flow loss plus the spelling loss, EMA after each step."""
        for name in self.trained:
            self.c[name].train()
        task = progress.add_task("denoiser", total=self.args.steps, completed=self.step)
        workers = self.args.workers if self.args.workers >= 0 else data.default_workers(self.gpu)
        start = self.step
        loader = data.denoiser_loader(self.args.seed, self.batch, self.tokenizer, start, self.args.steps, workers, self.gpu)  # type: ignore[arg-type]
        started, budget = time.time(), deadline - time.time()
        t0, first = time.time(), self.step + 1
        segment = {"from_step": start, "to_step": start, "recipe": self._recipe(), "batch": self.batch, "device": str(self.device)}
        self.segments.append(segment)
        params = [p for name in self.trained for p in self.c[name].parameters()]
        for x, m, ids, spell_target in loader:
            if time.time() >= deadline:
                break
            generator = torch.Generator(self.device).manual_seed(self.args.seed * data.STEP_SEED_STRIDE + self.step)
            for group in self.opt.param_groups:
                group["lr"] = self._learning_rate(time.time() - started, budget)
            loss, states, pooled = self.flow_loss(x, m, ids, generator)
            spell = self.spell_loss(states, pooled, spell_target)
            self.opt.zero_grad(set_to_none=True)
            (loss + self.args.spell_weight * spell).backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            self.opt.step()
            self.step += 1
            segment["to_step"] = self.step
            self._update_ema()
            now = time.time()
            self.train_time, t0 = self.train_time + now - t0, now
            if self.step % SYNC_EVERY == 0 or not self.gpu:
                progress.update(task, completed=self.step, description=f"denoiser loss {loss.item():.4f}")
            if self.step % LOG_EVERY == 0 or self.step == first:
                self.log.write(phase="flow", step=self.step, loss=loss.item(), spell=spell.item(), t=round(self.train_time, 1))
            if self.step % self.args.ckpt_every == 0:
                self._save()
            if self.args.eval_every and self.step % self.args.eval_every == 0:
                self.log.write(phase="eval", step=self.step, **self.quick_eval())

    def _learning_rate(self, elapsed: float, budget: float) -> float:
        """``--lr`` on the shared schedule (``safetext.testbed.recipe``)."""
        return recipe.learning_rate(self.args.lr, self.step - self.warm_from, elapsed, budget)

    def _update_ema(self) -> None:
        recipe.update_ema(((self.ema[name], self.c[name]) for name in self.trained), self.step)

    @torch.no_grad()
    def quick_eval(self) -> dict[str, float]:
        """Exact-word OCR accuracy on a few held-out prompts: a progress signal, not the benchmark."""
        from safetext.testbed.quality import read_word

        pipe = self.pipeline().to(self.device)
        pipe.set_progress_bar_config(disable=True)
        rng = random.Random(QUICK_EVAL_SEED)
        specs = [sample_spec(rng, "eval") for _ in range(QUICK_EVAL_PROMPTS)]
        out = pipe([s.prompt() for s in specs], generator=torch.Generator("cpu").manual_seed(0), **dm.PROFILE["generation"])
        hits = sum(read_word(img) == s.word.upper() for img, s in zip(out.images, specs))
        return {"ocr_exact": hits / len(specs)}

    # ---------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.args.out / "state.pt"

    def _modules(self) -> dict[str, Any]:
        modules: dict[str, Any] = {name: self.c[name] for name in self.trained}
        modules |= {f"ema_{name}": module for name, module in self.ema.items()}
        return modules | {"heads": self.heads, "opt": self.opt, "opt_text": self.opt_text}

    def _save(self) -> None:
        state: dict[str, Any] = {name: module.state_dict() for name, module in self._modules().items()}
        state |= {"text_step": self.text_step, "step": self.step, "train_time": self.train_time, "segments": self.segments,
                  "warm_from": self.warm_from, "started_from": self.started_from}
        state["sizes"] = dm.sizes_dict(self.sizes)
        recipe.save_checkpoint(state, self.state_path)

    def _load(self) -> None:
        s = torch.load(self.state_path, map_location=self.device, weights_only=False)
        if s["sizes"] != dm.sizes_dict(self.sizes):
            raise SystemExit(f"{self.state_path} holds a run of other sizes ({s['sizes']}); pass the same --tiny as that run")
        for name, module in self._modules().items():
            module.load_state_dict(s[name])
        self.text_step, self.step, self.train_time, self.segments = s["text_step"], s["step"], s["train_time"], s["segments"]
        self.warm_from, self.started_from = s.get("warm_from", 0), s.get("started_from", [])
        print(f"resumed from {self.state_path}: spelling step {self.text_step}, denoiser step {self.step}")

    def _init_from(self, folder: Path) -> None:
        """Weights, step count and history of an export; the spelling heads and optimisers start
        afresh (they are not exported), so the spelling phase runs again to fit the new heads."""
        meta = json.loads((folder / "training.json").read_text())
        if meta["sizes"] != dm.sizes_dict(self.sizes):
            raise SystemExit(f"{folder} is an export of other sizes ({meta['sizes']}); pass the same --tiny as that run")
        for name in self.trained:
            loaded = type(self.c[name]).from_pretrained(folder / name, torch_dtype=torch.float32, local_files_only=True)
            weights = loaded.state_dict()
            self.c[name].load_state_dict(weights)
            self.ema[name].load_state_dict(weights)
        self.step = self.warm_from = int(meta["denoiser_steps"])
        self.train_time = float(meta["train_seconds"])
        self.segments = list(meta["segments"])
        self.started_from = [*meta.get("started_from", []), _portable(folder)]
        print(f"started from {folder}: denoiser step {self.step}")

    # ---------------------------------------------------------------- export
    def pipeline(self) -> FluxPipeline:
        """A ``FluxPipeline`` over copies of the EMA weights (the trainer's modules stay as they are)."""
        parts = {name: copy.deepcopy(self.ema[name]).eval() for name in self.trained}
        return dm.build_pipeline(dict(self.c, vae=copy.deepcopy(self.c["vae"]).eval(), **parts))

    def export(self, folder: Path) -> None:
        """The EMA pipeline as fp16 safetensors, the model profile and ``training.json``."""
        import yaml

        pipe = self.pipeline().to(torch.float16)
        pipe.save_pretrained(folder, safe_serialization=True)
        (folder / "safetext_model.yaml").write_text(
            "# Model profile of the safetext DiT testbed (safetext/pipelines/profile.py).\n"
            + yaml.safe_dump(dm.PROFILE, sort_keys=False)
        )
        meta: dict[str, Any] = {
            "text_steps": self.text_step,
            "denoiser_steps": self.step,
            "batch": self.batch,
            "train_seconds": round(self.train_time),
            "device": str(self.device),
            "seed": self.args.seed,
            "sizes": dm.sizes_dict(self.sizes),
            "parameters": dm.parameter_counts(pipe.components),
            "autoencoder_from": _portable(self.args.vae_from),
            "objective": {"kind": "rectified flow, velocity noise - x0", "shift": dm.SHIFT, "guidance_embeds": False},
            "segments": [seg for seg in self.segments if seg["to_step"] > seg["from_step"]],
            "started_from": self.started_from,
        }
        (folder / "training.json").write_text(json.dumps(meta, indent=1))
        print(f"exported to {folder}: {meta['denoiser_steps']} denoiser steps, {meta['train_seconds']} s")

    def _recipe(self) -> dict[str, Any]:
        """What shapes the denoiser's learning, recorded per run segment (a resume may change it)."""
        a = self.args
        return {"lr": a.lr, "lr_final": recipe.LR_FINAL, "spell_weight": a.spell_weight, "minutes": a.minutes, "text_weight": DENOISER_TEXT_WEIGHT}


def _portable(folder: Path) -> str:
    """``folder`` relative to the checkout when inside it (``safetext/testbed/model``), else as given."""
    root = Path(__file__).resolve().parents[3]
    try:
        return str(folder.resolve().relative_to(root))
    except ValueError:
        return str(folder)


def main(argv: list[str] | None = None) -> None:
    """Run the phases still to do (until ``--minutes``), checkpoint, and export if asked."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(args)
    if not args.export_only:
        deadline = time.time() + (args.minutes * 60 if args.minutes else math.inf)
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
        with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn()) as progress:
            if trainer.text_step < args.text_pretrain:
                trainer.pretrain_text(progress, deadline)
            if trainer.text_step >= args.text_pretrain:
                trainer.train_denoiser(progress, deadline)
        trainer._save()
    if args.export:
        trainer.export(args.export)


if __name__ == "__main__":
    main()

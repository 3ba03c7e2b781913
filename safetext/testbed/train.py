"""Train the testbed model: ``python -m safetext.testbed.train --out runs/testbed --hours 2 --export DIR``.

Three phases, in order, each resumable from ``OUT/state.pt`` (saved every ``--ckpt-every``
steps and at the end; a run whose folder holds one carries on from it):

1. autoencoder: 64x256 RGB <-> 16x64 latents, L1 with the text box weighted up;
2. spelling: the text encoder alone learns to spell the prompt's word into its padding
   positions (``data.spelling_targets``), cheap because it needs no images;
3. denoiser: U-Net and text encoder jointly, v-prediction on the cosine schedule, the
   spelling loss beside it, EMA weights for export.

Components come from ``safetext.testbed.model``, batches from ``safetext.testbed.data``.
``--export DIR`` writes the EMA weights as a stock ``StableDiffusionPipeline`` folder (fp16
safetensors), the guard's preset and ``training.json`` (steps, recipe, lineage). On a GPU
the loop runs under bf16 autocast with rendering workers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from safetext.testbed import data, recipe
from safetext.testbed import model as tb
from safetext.testbed.render import OUTLINE, sample_spec

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import StableDiffusionPipeline

CPU_BATCH, GPU_BATCH = 16, 256  # denoiser batch when --batch is 0 (the shipped weights: 256 on a GPU)
AE_LR = 1e-3  # autoencoder from scratch
AE_FINETUNE_LR = 3e-4  # autoencoder taken from --init-from: fine-tuning, not training anew
AE_TEXT_WEIGHT = 4.0  # extra L1 weight inside the text box: the glyphs are what the OCR reads
AE_KL_WEIGHT = 1e-6  # just enough KL to keep the latents bounded; reconstruction dominates
AE_CPU_CROP = 128  # image columns per autoencoder sample on a CPU (random crops, see data.make_batch)
AE_GPU_BATCH_FACTOR = 4  # a GPU takes whole signs, this many times --ae-batch
SCALING_SIGNS, SCALING_SEED, SCALING_CHUNK = 256, 12345, 32  # signs that measure the latent std, fixed draws
TEXT_LR, TEXT_BATCH = 1e-3, 128  # spelling pre-training: text only, so large batches are cheap
WEIGHT_DECAY = 1e-2  # denoiser and text encoder
DENOISER_TEXT_WEIGHT = 3.0  # extra v-loss weight on latents inside the text box
HIGH_NOISE_SHARE = 0.5  # samples drawn from the noisiest timesteps, where the prompt decides the letters
HIGH_NOISE_FROM = 0.4  # ... that is, from the last 60% of the schedule
GRAD_CLIP = 1.0  # gradient-norm limit of U-Net and text encoder: one odd batch cannot derail a run
LOG_EVERY = 50  # steps between rows of OUT/log.jsonl
SYNC_EVERY = 10  # on a GPU, steps between progress updates (.item() waits for the device)
QUICK_EVAL_PROMPTS, QUICK_EVAL_SEED = 16, 777  # held-out prompts of the --eval-every check
LATENT_SCALE = 4  # image pixels per latent row and column (the autoencoder's down-sampling)


EXAMPLES = """\
examples:
  %(prog)s --out runs/testbed --hours 2 --export DIR      from scratch
  %(prog)s --out runs/more --init-from DIR --hours 0.1    continue exported weights
The same command again resumes from OUT/state.pt. The shipped weights' exact commands
are in safetext/testbed/README.md.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults are the shipped weights' recipe."""
    p = argparse.ArgumentParser(
        prog="python -m safetext.testbed.train",
        description="Train the testbed model (autoencoder, spelling, denoiser) and export it as a diffusers folder.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/testbed"), help="run folder: state.pt, log.jsonl (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data (default %(default)s)")
    p.add_argument("--ae-steps", type=int, default=1500, help="autoencoder steps (default %(default)s)")
    p.add_argument("--ae-batch", type=int, default=8, help=f"autoencoder batch on a CPU; a GPU takes {AE_GPU_BATCH_FACTOR}x (default %(default)s)")
    p.add_argument("--text-pretrain", type=int, default=600, help=f"spelling steps of {TEXT_BATCH} prompts (default %(default)s)")
    p.add_argument("--steps", type=int, default=20000, help="denoiser steps, a resumed run's included (default %(default)s)")
    p.add_argument("--batch", type=int, default=0, help=f"denoiser batch (default 0: {CPU_BATCH} on a CPU, {GPU_BATCH} on a GPU)")
    p.add_argument("--lr", type=float, default=1e-3, help="denoiser and text encoder learning rate (default %(default)s)")
    p.add_argument("--spell-weight", type=float, default=0.5, help="spelling loss weight beside the denoiser's (default %(default)s)")
    p.add_argument("--hours", type=float, default=0.0, help="stop with a checkpoint after this wall time; the rate decays to it")
    p.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=1000, help="steps between quick OCR checks, 0: none (default %(default)s)")
    p.add_argument("--device", default="auto", help="torch device (default auto: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--workers", type=int, default=-1, help=f"batch-rendering processes (default -1: none on a CPU, up to {data.MAX_WORKERS} on a GPU)")
    p.add_argument("--init-from", type=Path, default=None, help="start a new run from an exported testbed folder")
    p.add_argument(
        "--init-parts",
        choices=("all", "vae"),
        default="all",
        help="with --init-from: 'all' (default) continues every part from its exported step; 'vae' keeps "
        "only the autoencoder (fine-tuned for --ae-steps) and trains a fresh text encoder and denoiser",
    )
    p.add_argument("--export", type=Path, default=None, help="write the pipeline folder here when done")
    p.add_argument("--export-only", action="store_true", help="export the current checkpoint without training")
    args = p.parse_args(argv)
    if args.init_parts != "all" and args.init_from is None:
        p.error(f"--init-parts {args.init_parts} needs --init-from (the exported folder to start from)")
    if args.init_from is not None and not (args.init_from / "vae").is_dir():
        p.error(f"--init-from {args.init_from}: not an exported testbed folder (no vae/)")
    return args


class Trainer:
    """The components, optimisers and counters that every phase advances, and their checkpoint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if args.device == "auto" else args.device)
        self.gpu = self.device.type == "cuda"
        self.batch = args.batch or (GPU_BATCH if self.gpu else CPU_BATCH)
        args.out.mkdir(parents=True, exist_ok=True)
        self.c = tb.build_components(args.out / "tokenizer", seed=args.seed)
        for name in ("vae", "unet", "text_encoder"):
            self.c[name].to(self.device)
        self.position = tb.position_channels().to(self.device)
        self.ema_unet = copy.deepcopy(self.c["unet"]).requires_grad_(False)
        self.ema_text = copy.deepcopy(self.c["text_encoder"]).requires_grad_(False)
        # Reads the spelling slots (data.spelling_targets); training only, never exported.
        self.spell_head = torch.nn.Linear(self.c["text_encoder"].config.hidden_size, data.LETTER_CLASSES).to(self.device)
        self.opt_ae = torch.optim.AdamW(self.c["vae"].parameters(), lr=AE_LR, weight_decay=0.0)
        params = [*self.c["unet"].parameters(), *self.c["text_encoder"].parameters(), *self.spell_head.parameters()]
        self.opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=WEIGHT_DECAY)
        self.ae_step = self.text_step = self.step = 0
        self.warm_from = 0  # the denoiser step the learning-rate warm-up counts from
        self.scaling = 1.0  # the latents' 1/std, measured once the autoencoder is done
        self.rng = random.Random(args.seed)  # autoencoder and spelling draws (denoiser draws: data.DenoiserBatches)
        self.train_time = 0.0
        self.parent: dict[str, Any] | None = None  # the --init-from folder's training.json
        self.segments: list[dict[str, Any]] = []  # one per (re)start of the denoiser phase, with its recipe
        self.log = recipe.RunLog(args.out / "log.jsonl")
        if self.state_path.exists():
            self._load()
        elif args.init_from:
            self._init_from(args.init_from)

    # ---------------------------------------------------------------- phase 1: autoencoder
    def train_autoencoder(self, progress: Progress, deadline: float) -> None:
        """L1 reconstruction with the text box weighted up; the decoder sees the image channels only."""
        vae = self.c["vae"].train()
        task = progress.add_task("autoencoder", total=self.args.ae_steps, completed=self.ae_step)
        size = self.args.ae_batch * (AE_GPU_BATCH_FACTOR if self.gpu else 1)
        while self.ae_step < self.args.ae_steps and time.time() < deadline:
            t0 = time.time()
            x, m, _ = data.make_batch(self.rng, size, crop=None if self.gpu else AE_CPU_CROP)
            x, m = x.to(self.device), m.to(self.device)
            with recipe.autocast(self.gpu):
                posterior = vae.encode(x).latent_dist
                recon = vae.decode(tb.image_channels_only(posterior.sample())).sample
            kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar)[:, : tb.IMAGE_CHANNELS]
            l1 = ((1.0 + AE_TEXT_WEIGHT * m) * (recon.float() - x).abs()).mean()
            loss = l1 + AE_KL_WEIGHT * kl.sum(dim=(1, 2, 3)).mean()
            self.opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_ae.step()
            self.ae_step += 1
            self.train_time += time.time() - t0
            progress.update(task, advance=1, description=f"autoencoder loss {loss.item():.4f}")
            if self.ae_step % LOG_EVERY == 0:
                self.log.write(phase="ae", step=self.ae_step, loss=loss.item(), t=self.train_time)
            if self.ae_step % self.args.ckpt_every == 0:
                self._save()
        if self.ae_step >= self.args.ae_steps and self.scaling == 1.0:  # done, not yet measured
            self.scaling = self._latent_scaling()
            self._save()

    @torch.no_grad()
    def _latent_scaling(self) -> float:
        """1/std of the image latents, like SD's ``scaling_factor``: unit-variance diffusion targets."""
        vae = self.c["vae"].eval()
        x, _, _ = data.make_batch(random.Random(SCALING_SEED), SCALING_SIGNS)
        chunks = [x[i : i + SCALING_CHUNK].to(self.device) for i in range(0, SCALING_SIGNS, SCALING_CHUNK)]
        z = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in chunks])
        return float(1.0 / z[:, : tb.IMAGE_CHANNELS].float().std())

    # ---------------------------------------------------------------- phase 2: spelling
    def pretrain_text(self, progress: Progress, deadline: float) -> None:
        """Teach the text encoder to spell into its padding slots before the U-Net needs them."""
        text = self.c["text_encoder"].train()
        opt = torch.optim.AdamW([*text.parameters(), *self.spell_head.parameters()], lr=TEXT_LR)
        task = progress.add_task("spelling", total=self.args.text_pretrain, completed=self.text_step)
        while self.text_step < self.args.text_pretrain and time.time() < deadline:
            ids, target = data.spelling_batch(self.rng, self.c["tokenizer"], TEXT_BATCH)
            loss = self._spell_loss(text(ids.to(self.device))[0], target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.text_step += 1
            progress.update(task, advance=1, description=f"spelling loss {loss.item():.3f}")
            if self.text_step % LOG_EVERY == 0:
                self.log.write(phase="spell", step=self.text_step, loss=loss.item())
        if self.text_step >= self.args.text_pretrain:
            self.ema_text.load_state_dict(text.state_dict())  # the EMA starts from the spelling encoder
        self._save()

    def _spell_loss(self, cond: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the spelling head on the text states at ``SPELL_START``.. (one letter each)."""
        logits = self.spell_head(cond[:, tb.SPELL_START : tb.SPELL_START + tb.SPELL_SLOTS].float())
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.to(self.device).reshape(-1))

    # ---------------------------------------------------------------- phase 3: denoiser
    def train_denoiser(self, progress: Progress, deadline: float) -> None:
        """v-prediction on (scaled image latents + position channels), text box weighted up, EMA."""
        vae = self.c["vae"].eval().requires_grad_(False)
        unet, text = self.c["unet"].train(), self.c["text_encoder"].train()
        alphas = torch.as_tensor(self.c["scheduler"].alphas_cumprod, dtype=torch.float32, device=self.device)
        high_from = int(HIGH_NOISE_FROM * len(alphas))
        task = progress.add_task("denoiser", total=self.args.steps, completed=self.step)
        workers = self.args.workers if self.args.workers >= 0 else data.default_workers(self.gpu)
        tokenizer, start, stop = self.c["tokenizer"], self.step, self.args.steps
        loader = data.denoiser_loader(self.args.seed, self.batch, tokenizer, start, stop, workers, self.gpu)
        started, budget = time.time(), deadline - time.time()
        t0, first = time.time(), self.step + 1
        segment = {"from_step": start, "to_step": start, "recipe": self._recipe(), "batch": self.batch, "device": str(self.device)}
        self.segments.append(segment)
        for x, m, ids, spell_target in loader:
            if time.time() >= deadline:
                break
            with torch.no_grad(), recipe.autocast(self.gpu):
                z0 = vae.encode(x.to(self.device, non_blocking=True)).latent_dist.mean
            z0 = z0[:, : tb.IMAGE_CHANNELS].float() * self.scaling
            z0 = torch.cat([z0, self.position.expand(z0.shape[0], -1, -1, -1)], 1)
            weight = 1.0 + DENOISER_TEXT_WEIGHT * F.max_pool2d(m.to(self.device), LATENT_SCALE)
            t = torch.randint(0, len(alphas), (z0.shape[0],), device=self.device)
            high = torch.rand(z0.shape[0], device=self.device) < HIGH_NOISE_SHARE
            t = torch.where(high, torch.randint(high_from, len(alphas), t.shape, device=self.device), t)
            a, s = alphas[t].sqrt()[:, None, None, None], (1 - alphas[t]).sqrt()[:, None, None, None]
            noise = torch.randn_like(z0)
            for group in self.opt.param_groups:
                group["lr"] = self._learning_rate(time.time() - started, budget)
            with recipe.autocast(self.gpu):
                cond = text(ids.to(self.device))[0]
                pred = unet(a * z0 + s * noise, t, cond).sample
            loss = (weight * (pred.float() - (a * noise - s * z0)) ** 2).mean()
            spell = self._spell_loss(cond, spell_target)
            self.opt.zero_grad(set_to_none=True)
            (loss + self.args.spell_weight * spell).backward()
            torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text.parameters()], GRAD_CLIP)
            self.opt.step()
            self.step += 1
            segment["to_step"] = self.step
            self._update_ema()
            now = time.time()
            self.train_time, t0 = self.train_time + now - t0, now
            if self.step % SYNC_EVERY == 0 or not self.gpu:
                progress.update(task, completed=self.step, description=f"denoiser loss {loss.item():.4f}")
            if self.step % LOG_EVERY == 0 or self.step == first:  # the first row shows a (re)start's losses at once
                self.log.write(phase="unet", step=self.step, loss=loss.item(), spell=spell.item(), t=self.train_time)
            if self.step % self.args.ckpt_every == 0:
                self._save()
            if self.args.eval_every and self.step % self.args.eval_every == 0:
                self.log.write(phase="eval", step=self.step, **self.quick_eval())

    def _learning_rate(self, elapsed: float, budget: float) -> float:
        """``--lr`` on the shared schedule; the warm-up restarts at ``--init-from``'s step (fresh optimiser)."""
        return recipe.learning_rate(self.args.lr, self.step - self.warm_from, elapsed, budget)

    def _update_ema(self) -> None:
        recipe.update_ema(((self.ema_unet, self.c["unet"]), (self.ema_text, self.c["text_encoder"])), self.step)

    @torch.no_grad()
    def quick_eval(self) -> dict[str, float]:
        """Exact-word OCR accuracy on a few held-out prompts: a progress signal, not the benchmark."""
        from safetext.testbed.quality import read_word

        pipe = self.pipeline().to(self.device)
        pipe.set_progress_bar_config(disable=True)
        rng = random.Random(QUICK_EVAL_SEED)
        specs = [sample_spec(rng, "eval") for _ in range(QUICK_EVAL_PROMPTS)]
        out = pipe(
            [s.prompt() for s in specs],
            num_inference_steps=tb.DEFAULT_STEPS,
            guidance_scale=tb.DEFAULT_GUIDANCE,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="pil",
        )
        hits = sum(read_word(img) == s.word.upper() for img, s in zip(out.images, specs))
        self.c["unet"].train()
        return {"ocr_exact": hits / len(specs)}

    # ---------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.args.out / "state.pt"

    def _save(self) -> None:
        modules = {"vae": self.c["vae"], "unet": self.c["unet"], "text_encoder": self.c["text_encoder"]}
        modules |= {"ema_unet": self.ema_unet, "ema_text": self.ema_text, "spell_head": self.spell_head}
        modules |= {"opt_ae": self.opt_ae, "opt": self.opt}
        state = {name: module.state_dict() for name, module in modules.items()}
        state |= {
            "ae_step": self.ae_step,
            "text_step": self.text_step,
            "step": self.step,
            "warm_from": self.warm_from,
            "scaling": self.scaling,
            "rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "train_time": self.train_time,
            "parent": self.parent,
            "segments": self.segments,
        }
        recipe.save_checkpoint(state, self.state_path)

    def _load(self) -> None:
        s = torch.load(self.state_path, map_location=self.device, weights_only=False)
        for name in ("vae", "unet", "text_encoder"):
            self.c[name].load_state_dict(s[name])
        for name in ("ema_unet", "ema_text", "spell_head", "opt_ae", "opt"):
            getattr(self, name).load_state_dict(s[name])
        self.ae_step, self.text_step, self.step, self.warm_from = s["ae_step"], s["text_step"], s["step"], s["warm_from"]
        self.scaling, self.train_time, self.parent, self.segments = s["scaling"], s["train_time"], s["parent"], s["segments"]
        self.rng.setstate(s["rng"])
        torch.set_rng_state(s["torch_rng"].cpu())  # map_location moved it to the device
        print(f"resumed from {self.state_path}: autoencoder step {self.ae_step}, denoiser step {self.step}")

    def _init_from(self, folder: Path) -> None:
        """Start from exported weights (fresh optimisers): all parts, or only the autoencoder."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel

        meta = folder / "training.json"
        done = json.loads(meta.read_text()) if meta.exists() else {}
        self.parent = {**done, "folder": str(folder), "init_parts": self.args.init_parts}
        vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
        self.c["vae"].load_state_dict(vae.state_dict())
        if self.args.init_parts == "vae":
            for group in self.opt_ae.param_groups:
                group["lr"] = AE_FINETUNE_LR
            print(f"autoencoder initialised from {folder}; fine-tuning it for {self.args.ae_steps} steps")
            return
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
        text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
        for live, ema, loaded in ((self.c["unet"], self.ema_unet, unet), (self.c["text_encoder"], self.ema_text, text)):
            live.load_state_dict(loaded.state_dict())
            ema.load_state_dict(loaded.state_dict())
        self.scaling = float(vae.config.scaling_factor)
        self.ae_step, self.text_step = self.args.ae_steps, self.args.text_pretrain  # both done in the parent
        self.step = self.warm_from = int(done.get("denoiser_steps", 0))
        self.train_time = float(done.get("train_seconds", 0))
        print(f"initialised from {folder} (denoiser step {self.step})")

    # ---------------------------------------------------------------- export
    def pipeline(self) -> StableDiffusionPipeline:
        """A ``StableDiffusionPipeline`` over the EMA weights (it shares modules with the trainer)."""
        vae = copy.deepcopy(self.c["vae"]).eval()
        vae.register_to_config(scaling_factor=self.scaling)
        return tb.assemble_pipeline(dict(self.c, vae=vae, unet=self.ema_unet.eval(), text_encoder=self.ema_text.eval()))

    def export(self, folder: Path) -> None:
        """The EMA pipeline as fp16 safetensors, the guard's preset, the model profile and ``training.json``."""
        profile = tb.PROFILE_FILE.read_text()  # read first: the export may overwrite the shipped folder
        pipe = self.pipeline()
        pipe.to(torch.float16)
        pipe.save_pretrained(folder, safe_serialization=True)
        (folder / "safetext_preset.yaml").write_text(tb.PRESET_FILE.read_text())
        (folder / "safetext_model.yaml").write_text(profile)
        meta: dict[str, Any] = {
            "ae_steps": self.ae_step,
            "denoiser_steps": self.step,
            "batch": self.batch,
            "train_seconds": round(self.train_time),
            "device": str(self.device),
            "seed": self.args.seed,
            "outline": list(OUTLINE),
        }
        # a resume past its deadline took no step: not a segment
        segments = [seg for seg in self.segments if seg["to_step"] > seg["from_step"]]
        if self.parent is not None:
            self._add_lineage(meta, segments)
        elif len(segments) > 1:
            meta["segments"] = segments
        (folder / "training.json").write_text(json.dumps(meta, indent=1))
        print(f"exported to {folder}: {meta}")

    def _recipe(self) -> dict[str, Any]:
        """What shapes the denoiser's learning, recorded per run segment (a resume may change it)."""
        args = self.args
        return {"lr": args.lr, "lr_final": recipe.LR_FINAL, "spell_weight": args.spell_weight, "high_noise": HIGH_NOISE_SHARE, "outline": True}

    def _add_lineage(self, meta: dict[str, Any], segments: list[dict[str, Any]]) -> None:
        """A warm-started export keeps its parent's history with this run appended as a stage, so
        training.json always says how the weights were made (and no steps this run did not take)."""
        p, parts = self.parent, self.args.init_parts
        assert p is not None
        fresh = parts == "vae"  # a fresh denoiser: only the autoencoder's past carries over
        own_ae = self.ae_step if fresh else 0
        meta["ae_steps"] = int(p.get("ae_steps", 0)) + own_ae
        stage = {
            "stage": f"--init-from {p['folder']} --init-parts {parts}",
            "recipe": self._recipe(),
            "device": str(self.device),
            "autoencoder_steps": own_ae,
            "denoiser_steps": self.step - (0 if fresh else int(p.get("denoiser_steps", 0))),
            "batch": self.batch,
            "train_seconds": round(self.train_time - (0 if fresh else float(p.get("train_seconds", 0)))),
        }
        if len(segments) > 1:  # resumed: "recipe" is only the last run's
            stage["segments"] = segments
        if fresh:
            meta["autoencoder_from"] = p["folder"]
            meta["history"] = [stage]
            return
        keys = ("denoiser_steps", "batch", "train_seconds", "device")
        earlier = p.get("history") or [{"stage": p["folder"], **{k: p[k] for k in keys if k in p}}]
        meta["history"] = [*earlier, stage]


def main(argv: list[str] | None = None) -> None:
    """Run the phases still to do (until ``--hours``), checkpoint, and export if asked."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(args)
    if not args.export_only:
        deadline = time.time() + (args.hours * 3600 if args.hours else math.inf)
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
        with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn()) as progress:
            trainer.train_autoencoder(progress, deadline)
            if trainer.ae_step >= args.ae_steps and trainer.text_step < args.text_pretrain:
                trainer.pretrain_text(progress, deadline)
            if trainer.ae_step >= args.ae_steps and trainer.text_step >= args.text_pretrain:
                trainer.train_denoiser(progress, deadline)
        trainer._save()
    if args.export:
        trainer.export(args.export)


if __name__ == "__main__":
    main()

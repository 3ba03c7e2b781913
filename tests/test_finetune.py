"""``safetext finetune``: LoRA lands on the preset's modules only, saves/loads bitwise, resumes
exactly, rejects bad data with one line, and composes with the guard's injection."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from safetext.errors import FinetuneError
from safetext.lora import finetune, load_examples, select_targets, write_examples
from safetext.lora.train import ADAPTER

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOCALIZED = ["up_blocks.1.attentions.0.transformer_blocks.0.attn2"]  # a cross-attention module of tiny:sd
SIZE = (16, 16)  # tiny:sd's image size (sample_size 8, VAE factor 2)
PROMPTS = ['A sign that says "robot"', 'A sign that says "zebra"', "a red sign", "a blue banner"]


def tiny_sd() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_data(folder: Path, n: int = 8, size: tuple[int, int] = SIZE) -> Path:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        items.append((Image.fromarray(pixels), PROMPTS[i % len(PROMPTS)]))
    return write_examples(folder, items)


def images(pipe: Any, prompt: str = PROMPTS[0], seed: int = 0) -> np.ndarray:
    out = pipe(prompt, num_inference_steps=3, output_type="np", generator=torch.Generator().manual_seed(seed))
    return out.images


def lora_state(pipe: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    return {k: v.clone() for k, v in get_peft_model_state_dict(denoiser, adapter_name=ADAPTER).items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path, dict[str, torch.Tensor]]:
    """tiny:sd with 6 steps of LoRA on LOCALIZED (lr high enough that the adapter changes the output)."""
    root = tmp_path_factory.mktemp("ft")
    data = make_data(root / "data")
    pipe = tiny_sd()
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    result = finetune(pipe, data, LOCALIZED, steps=6, batch=2, lr=5e-2, out=root / "adapter", progress=False)
    return pipe, result, root, base


def test_only_the_preset_modules_get_lora_and_gradients(trained: Any) -> None:
    pipe, result, _, base = trained
    trainable = [n for n, p in pipe.unet.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(LOCALIZED[0] + ".") and "lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].removeprefix(LOCALIZED[0] + ".") for n in trainable} == {"to_q", "to_k", "to_v", "to_out.0"}
    assert result.trainable_params == sum(p.numel() for n, p in pipe.unet.named_parameters() if p.requires_grad)
    # the frozen weights did not move
    now = pipe.unet.state_dict()
    for key, value in base.items():
        peft_key = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(now.get(key, now.get(peft_key)), value), key
    # gradients of one loss reach the LoRA parameters of the preset's module, and nothing else
    pipe.unet.zero_grad(set_to_none=True)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(2))
    pipe.unet(x, torch.tensor([500]), encoder_hidden_states=text).sample.square().mean().backward()
    with_grad = {n for n, p in pipe.unet.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and with_grad <= set(trainable)
    assert any(".lora_B." in n for n in with_grad)
    pipe.unet.zero_grad(set_to_none=True)


def test_save_then_load_reproduces_outputs_bitwise(trained: Any) -> None:
    pipe, result, root, _ = trained
    expected = images(pipe)
    fresh = tiny_sd()
    assert not np.array_equal(images(fresh), expected), "the adapter should change the output"
    fresh.load_lora_weights(str(root / "adapter"))
    assert np.array_equal(images(fresh), expected)
    card = (root / "adapter" / "README.md").read_text()
    assert LOCALIZED[0] in card and "| steps | 6 " in card and "rank / alpha | 4 / 4.0" in card
    facts = json.loads((root / "adapter" / "finetune.json").read_text())
    assert facts["targets"]["modules"] == LOCALIZED and facts["objective"] == "epsilon"
    from safetext.lora.save import add_metrics

    add_metrics(root / "adapter", {"new words read": "50.0%"})
    assert "| new words read | 50.0% |" in (root / "adapter" / "README.md").read_text()
    assert json.loads((root / "adapter" / "finetune.json").read_text())["metrics"] == {"new words read": "50.0%"}


def test_adapter_scale_zero_gives_the_base_output(trained: Any) -> None:
    pipe, _, root, _ = trained
    fresh = tiny_sd()
    reference = images(fresh, PROMPTS[2])
    fresh.load_lora_weights(str(root / "adapter"), adapter_name="ft")
    fresh.set_adapters(["ft"], adapter_weights=[0.0])
    assert np.array_equal(images(fresh, PROMPTS[2]), reference)


def test_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", n=5)  # 5 images, batch 2: steps cross epoch boundaries
    straight = tiny_sd()
    finetune(straight, data, LOCALIZED, steps=4, batch=2, lr=1e-2, out=tmp_path / "a", progress=False)
    first = tiny_sd()
    part = finetune(first, data, LOCALIZED, steps=2, batch=2, lr=1e-2, out=tmp_path / "b", progress=False)
    assert part.stats.steps == 2
    resumed = tiny_sd()
    rest = finetune(resumed, data, LOCALIZED, steps=4, batch=2, lr=1e-2, out=tmp_path / "b", resume=True, progress=False)
    assert (rest.stats.start_step, rest.stats.steps, len(rest.stats.losses)) == (2, 4, 2)
    a, b = lora_state(straight), lora_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], lora_state(first)[k]) for k in a), "steps 3-4 must have changed the weights"


def test_resume_refuses_other_data_order(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", n=4)
    finetune(tiny_sd(), data, LOCALIZED, steps=1, batch=2, out=tmp_path / "a", progress=False)
    with pytest.raises(FinetuneError, match="same data, --seed and --batch"):
        finetune(tiny_sd(), data, LOCALIZED, steps=2, batch=4, out=tmp_path / "a", resume=True, progress=False)


def _write(folder: Path, lines: list[str], images: dict[str, Image.Image]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        image.save(folder / name)
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


GOOD = Image.new("RGB", SIZE, (10, 20, 30))


@pytest.mark.parametrize(
    ("lines", "files", "message"),
    [
        (['{"file_name": "a.png", "text": "x"}', '{"file_name": "b.png", "text": "y"}'], {"a.png": GOOD}, r"metadata.jsonl:2: image not found: .*b.png"),
        (['{"file_name": "a.png"}'], {"a.png": GOOD}, r"metadata.jsonl:1: missing 'text'"),
        (['{"text": "x"}'], {}, r"metadata.jsonl:1: missing 'file_name'"),
        (['{"file_name": "a.png", "text": "x"}', '{"file_name": "a.png", "text": "x"'], {"a.png": GOOD}, r"metadata.jsonl:2: invalid JSON"),
        (['["a.png", "x"]'], {}, r"metadata.jsonl:1: expected a JSON object"),
        (['{"file_name": "a.png", "text": "x"}'], {"a.png": Image.new("RGB", (32, 16))}, r"metadata.jsonl:1: image .*a.png is 32x16 px; the model takes 16x16"),
        ([""], {}, r"metadata.jsonl: the data set is empty"),
    ],
)
def test_bad_data_gets_one_line_naming_file_and_line(tmp_path: Path, lines: list[str], files: dict[str, Any], message: str) -> None:
    folder = _write(tmp_path / "d", lines, files)
    with pytest.raises(FinetuneError, match=message) as info:
        load_examples(folder, SIZE)
    assert len(str(info.value).splitlines()) == 1


def test_unreadable_image_and_empty_folder(tmp_path: Path) -> None:
    folder = _write(tmp_path / "d", ['{"file_name": "a.png", "text": "x"}'], {})
    (folder / "a.png").write_bytes(b"not a png")
    with pytest.raises(FinetuneError, match=r"metadata.jsonl:1: cannot read image .*a.png"):
        load_examples(folder, SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FinetuneError, match=r"empty: no metadata.jsonl"):
        load_examples(tmp_path / "empty", SIZE)
    with pytest.raises(FinetuneError, match="data folder not found"):
        load_examples(tmp_path / "nope", SIZE)


def test_baseline_targets() -> None:
    from safetext.testbed import load

    pipe = load()
    preset = ["up_blocks.0.attentions.0.transformer_blocks.0.attn2", "up_blocks.0.attentions.1.transformer_blocks.0.attn2"]
    local = select_targets(pipe, preset, "localized", rank=4)
    every = select_targets(pipe, preset, "all", rank=4)
    rand = select_targets(pipe, preset, "random", rank=4, seed=3)
    assert local.modules == tuple(preset) and len(local.layers) == 8
    assert set(local.modules) < set(every.modules) and any(m.endswith("attn1") for m in every.modules)
    assert not set(rand.modules) & set(preset) and rand.lora_params == local.lora_params
    assert rand.modules == select_targets(pipe, preset, "random", rank=4, seed=3).modules
    with pytest.raises(FinetuneError, match="not among the denoiser's attention modules: down_blocks.9"):
        select_targets(pipe, ["down_blocks.9.attn2"])


def test_joint_attention_gets_text_kv_projections() -> None:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd3", seed=0)
    targets = select_targets(pipe, ["transformer_blocks.1.attn"])
    suffixes = {layer.removeprefix("transformer_blocks.1.attn.") for layer in targets.layers}
    assert suffixes == {"to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"}


def test_guard_runs_its_processors_with_an_adapter_loaded(trained: Any) -> None:
    """Injection composes with LoRA: the rewrite runs safetext's processors over the LoRA
    projections and matches a reference that feeds the benign text to the preset's module."""
    from _inject_helpers import BENIGN, TOXIC, FakePolicy

    from safetext import Guard

    _, _, root, _ = trained
    pipe = tiny_sd()
    pipe.load_lora_weights(str(root / "adapter"))
    module = pipe.unet.get_submodule(LOCALIZED[0])
    seen: list[str] = []
    hook = module.register_forward_pre_hook(lambda m, args: seen.append(type(m.processor).__module__))
    guard = Guard(pipe, policy=FakePolicy(), preset=LOCALIZED)
    kwargs = dict(num_inference_steps=3, output_type="np")
    guarded = guard(TOXIC, generator=torch.Generator().manual_seed(0), **kwargs)
    hook.remove()
    assert guarded.decision.action.value == "rewrite" and guarded.images is not None
    assert seen and all(name.startswith("safetext.inject") for name in seen)
    assert type(module.to_k).__module__.startswith("peft"), "the LoRA layer is still in place"

    # reference: the preset module reads the benign prompt's text (conditional half of the CFG batch)
    uncond, benign = _cfg_embeds(pipe, BENIGN)

    def swap(m: Any, args: Any, kw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return args, {**kw, "encoder_hidden_states": torch.cat([uncond, benign])}

    handle = module.register_forward_pre_hook(swap, with_kwargs=True)
    try:
        reference = pipe(TOXIC, generator=torch.Generator().manual_seed(0), **kwargs).images
    finally:
        handle.remove()
    np.testing.assert_allclose(guarded.images, reference, atol=1e-5)
    allowed = guard('a sign that says "hello"', generator=torch.Generator().manual_seed(0), **kwargs)
    direct = pipe('a sign that says "hello"', generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.array_equal(allowed.images, direct)


def _cfg_embeds(pipe: Any, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    cond, uncond = pipe.encode_prompt(prompt, pipe.device, 1, True)
    return uncond, cond


def test_cli_reports_bad_data_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from safetext.cli import app

    folder = _write(tmp_path / "d", ['{"file_name": "a.png", "text": "x"}', "{oops"], {"a.png": GOOD})
    result = CliRunner().invoke(app, ["finetune", "--model", "testbed", "--data", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --data: ") and "metadata.jsonl:2: invalid JSON" in lines[0]
    missing = CliRunner().invoke(app, ["finetune", "--model", "testbed", "--data", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "data folder not found" in missing.output
    no_ckpt = CliRunner().invoke(app, ["finetune", "--model", "testbed", "--data", str(folder), "--out", str(tmp_path / "o"), "--resume"])
    assert no_ckpt.exit_code == 2 and "--resume: no checkpoint" in no_ckpt.output


def test_cli_trains_and_writes_a_loadable_adapter(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from safetext.cli import app

    data = make_data(tmp_path / "data", n=4)
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"name: tiny-sd-test\nmodules:\n- {LOCALIZED[0]}\n")
    out = tmp_path / "adapter"
    args = ["finetune", "--model", "tiny:sd", "--data", str(data), "--preset", str(preset), "--steps", "2", "--batch", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"1 module(s): {LOCALIZED[0]}" in result.output and "steps 0->2" in result.output
    assert (out / "pytorch_lora_weights.safetensors").is_file() and (out / "checkpoints" / "checkpoint.pt").is_file()
    assert "| preset | tiny-sd-test |" in (out / "README.md").read_text()
    resumed = CliRunner().invoke(app, [*args[:-4], "--steps", "3", "--batch", "2", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "steps 2->3" in resumed.output
    wrong = tmp_path / "wrong"
    write_examples(wrong, [(Image.new("RGB", (24, 16)), "a sign")])
    bad = CliRunner().invoke(app, ["finetune", "--model", "tiny:sd", "--data", str(wrong), "--preset", str(preset), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "is 24x16 px; the model takes 16x16" in bad.output


@pytest.mark.parametrize(("kind", "module", "objective"), [("sd3", "transformer_blocks.1.attn", "flow"), ("sdxl", "up_blocks.0.attentions.0.transformer_blocks.1.attn2", "epsilon")])
def test_sd3_and_sdxl_train_save_and_load_bitwise(tmp_path: Path, kind: str, module: str, objective: str) -> None:
    from _inject_helpers import call_kwargs

    from safetext.lora.objective import image_size
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline(kind, seed=0)
    pipe.set_progress_bar_config(disable=True)
    data = make_data(tmp_path / "data", n=4, size=image_size(pipe))
    finetune(pipe, data, [module], steps=2, batch=2, lr=5e-2, out=tmp_path / "a", progress=False)
    assert json.loads((tmp_path / "a" / "finetune.json").read_text())["objective"] == objective
    expected = pipe(PROMPTS[0], **call_kwargs(kind)).images
    fresh = build_tiny_pipeline(kind, seed=0)
    fresh.set_progress_bar_config(disable=True)
    base = fresh(PROMPTS[0], **call_kwargs(kind)).images
    fresh.load_lora_weights(str(tmp_path / "a"))
    assert not np.array_equal(base, expected)
    assert np.array_equal(fresh(PROMPTS[0], **call_kwargs(kind)).images, expected)


def test_data_order_visits_every_example_once_per_epoch() -> None:
    from safetext.lora.train import batch_indices

    n, batch = 7, 3
    stream = [i for step in range(7) for i in batch_indices(5, n, batch, step)]  # 21 positions: 3 epochs
    for epoch in range(3):
        assert sorted(stream[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert stream[:n] != stream[n : 2 * n], "each epoch has its own order"
    assert batch_indices(5, n, batch, 4) == stream[12:15]
    assert batch_indices(6, n, batch, 0) != stream[:3] or batch_indices(6, n, batch, 1) != stream[3:6]


# --------------------------------------------------------------------------- FLUX.1

FLUX_MODULES = ["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"]  # one double-, one single-stream module
FLUX_SUFFIXES = {
    FLUX_MODULES[0]: {"to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"},
    FLUX_MODULES[1]: {"to_q", "to_k", "to_v"},
}
FLUX_CALL: dict[str, Any] = dict(num_inference_steps=2, output_type="np", height=32, width=32, max_sequence_length=32)


def tiny_flux() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("flux", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_images(pipe: Any, prompt: str = PROMPTS[0], seed: int = 0) -> np.ndarray:
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **FLUX_CALL).images


def flux_data(folder: Path, n: int) -> Path:
    from safetext.lora.objective import image_size

    return make_data(folder, n=n, size=image_size(tiny_flux()))


@pytest.fixture(scope="module")
def flux_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path, dict[str, torch.Tensor]]:
    """tiny:flux (guidance-embedded) with 2 steps of LoRA on FLUX_MODULES."""
    root = tmp_path_factory.mktemp("ftflux")
    data = flux_data(root / "data", n=4)
    pipe = tiny_flux()
    base = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    result = finetune(pipe, data, FLUX_MODULES, steps=2, batch=2, lr=5e-2, out=root / "adapter", progress=False)
    return pipe, result, root, base



def test_hidream_targets_name_its_linear_output_and_text_kv() -> None:
    """HiDream's ``to_out`` is one Linear (no ``to_out.0``); its text K/V are ``to_k_t``/``to_v_t``."""
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("hidream", seed=0)
    double, single = "double_stream_blocks.0.block.attn1", "single_stream_blocks.0.block.attn1"
    targets = select_targets(pipe, [double, single])
    suffixes = {m: {layer.removeprefix(m + ".") for layer in targets.layers if layer.startswith(m + ".")} for m in (double, single)}
    assert suffixes == {double: {"to_q", "to_k", "to_v", "to_out", "to_k_t", "to_v_t"}, single: {"to_q", "to_k", "to_v", "to_out"}}
    with pytest.raises(FinetuneError, match="not HiDreamImagePipeline"):
        finetune(pipe, [], preset=[double], progress=False)

def test_flux_baseline_targets() -> None:
    pipe = tiny_flux()
    local = select_targets(pipe, FLUX_MODULES, "localized", rank=4)
    assert {m: {layer.removeprefix(m + ".") for layer in local.layers if layer.startswith(m + ".")} for m in FLUX_MODULES} == FLUX_SUFFIXES
    every = select_targets(pipe, FLUX_MODULES, "all", rank=4)
    assert set(every.modules) == {f"transformer_blocks.{i}.attn" for i in range(2)} | {f"single_transformer_blocks.{i}.attn" for i in range(2)}
    assert len(every.layers) == 2 * 6 + 2 * 3
    rand = select_targets(pipe, FLUX_MODULES, "random", rank=4, seed=1)
    assert rand.modules and not set(rand.modules) & set(FLUX_MODULES)
    assert rand.lora_params <= local.lora_params


def test_flux_only_the_preset_modules_get_lora_and_gradients(flux_trained: Any) -> None:
    pipe, result, _, base = flux_trained
    model = pipe.transformer
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and any(n.startswith(m + ".") for m in FLUX_MODULES) for n in trainable)
    for module, suffixes in FLUX_SUFFIXES.items():
        assert {n.split(".lora_")[0].removeprefix(module + ".") for n in trainable if n.startswith(module + ".")} == suffixes
    assert result.trainable_params == sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    now = model.state_dict()
    for key, value in base.items():
        peft_key = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(now.get(key, now.get(peft_key)), value), key
    assert json.loads((result.out / "finetune.json").read_text())["objective"] == "flow"
    # one loss on small inputs: gradients reach the LoRA parameters of both modules and nothing else
    model.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(1)
    out = model(hidden_states=torch.randn(1, 16, 16, generator=g), timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
                pooled_projections=torch.randn(1, 32, generator=g), encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
                txt_ids=torch.zeros(8, 3), img_ids=torch.zeros(16, 3), return_dict=False)[0]
    out.square().mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and with_grad <= set(trainable)
    assert all(any(n.startswith(m + ".") and ".lora_B." in n for n in with_grad) for m in FLUX_MODULES)
    model.zero_grad(set_to_none=True)


def test_flux_save_load_bitwise_and_scale_zero_is_the_base(flux_trained: Any) -> None:
    pipe, _, root, _ = flux_trained
    expected = flux_images(pipe)
    fresh = tiny_flux()
    reference = flux_images(fresh)
    assert not np.array_equal(reference, expected), "the adapter should change the output"
    fresh.load_lora_weights(str(root / "adapter"), adapter_name="ft")
    assert np.array_equal(flux_images(fresh), expected)
    fresh.set_adapters(["ft"], adapter_weights=[0.0])
    assert np.array_equal(flux_images(fresh), reference)


@pytest.mark.slow
def test_flux_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    data = flux_data(tmp_path / "data", n=3)  # 3 images, batch 2: step 2 crosses the epoch boundary
    straight = tiny_flux()
    finetune(straight, data, FLUX_MODULES, steps=2, batch=2, lr=1e-2, out=tmp_path / "a", progress=False)
    first = tiny_flux()
    finetune(first, data, FLUX_MODULES, steps=1, batch=2, lr=1e-2, out=tmp_path / "b", progress=False)
    resumed = tiny_flux()
    rest = finetune(resumed, data, FLUX_MODULES, steps=2, batch=2, lr=1e-2, out=tmp_path / "b", resume=True, progress=False)
    assert (rest.stats.start_step, rest.stats.steps) == (1, 2)
    a, b, one = lora_state(straight), lora_state(resumed), lora_state(first)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], one[k]) for k in a), "step 2 must have changed the weights"


def test_flux_guard_injects_through_the_lora_layers(flux_trained: Any) -> None:
    from _inject_helpers import TOXIC, FakePolicy

    from safetext import Guard

    _, _, root, _ = flux_trained
    pipe = tiny_flux()
    pipe.load_lora_weights(str(root / "adapter"))
    projection = pipe.transformer.get_submodule(FLUX_MODULES[0]).add_k_proj
    assert type(projection).__module__.startswith("peft"), "the text K projection is a LoRA layer"
    unguarded = flux_images(pipe, TOXIC)
    calls: list[int] = []
    hook = projection.register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))
    guard = Guard(pipe, policy=FakePolicy(), preset=FLUX_MODULES)
    guarded = guard(TOXIC, generator=torch.Generator().manual_seed(0), **FLUX_CALL)
    hook.remove()
    assert guarded.decision.action.value == "rewrite" and guarded.injection is not None
    steps = guarded.injection.injected_steps
    assert set(FLUX_MODULES) <= set(steps) and all(steps[m] for m in FLUX_MODULES)
    assert calls, "the guarded call ran the LoRA text K projection"
    assert not np.array_equal(guarded.images, unguarded), "the benign text K/V changed the output"
    allowed = guard(PROMPTS[2], generator=torch.Generator().manual_seed(0), **FLUX_CALL)
    assert allowed.decision.action.value == "allow"
    assert np.array_equal(allowed.images, flux_images(pipe, PROMPTS[2]))


def test_cli_trains_tiny_flux(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from safetext.cli import app

    data = flux_data(tmp_path / "data", n=2)
    preset = tmp_path / "preset.yaml"
    preset.write_text("name: tiny-flux-test\nmodules:\n" + "".join(f"- {m}\n" for m in FLUX_MODULES))
    out = tmp_path / "adapter"
    args = ["finetune", "--model", "tiny:flux", "--data", str(data), "--preset", str(preset), "--steps", "2", "--batch", "1", "--lr", "0.05", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"2 module(s): {', '.join(FLUX_MODULES)}" in result.output and "steps 0->2" in result.output
    assert (out / "pytorch_lora_weights.safetensors").is_file() and "| preset | tiny-flux-test |" in (out / "README.md").read_text()
    fresh = tiny_flux()
    base = flux_images(fresh)
    fresh.load_lora_weights(str(out))
    assert not np.array_equal(flux_images(fresh), base), "the trained adapter loads and changes the output"


def test_dit_testbed_layout_trains_and_loads_bitwise(tmp_path: Path) -> None:
    """The DiT testbed's FluxPipeline: no guidance embedding, a 6-channel VAE with position
    channels, size and T5 length from its model profile."""
    import yaml

    from safetext.lora.objective import default_latent_encoder, encode_texts, image_size, testbed_latents
    from safetext.pipelines.load import load_pipeline
    from safetext.testbed.dit import model as dm

    folder = tmp_path / "dit"
    dm.build_pipeline(sizes=dm.TINY).save_pretrained(folder)
    (folder / "safetext_model.yaml").write_text(yaml.safe_dump(dm.PROFILE, sort_keys=False))
    pipe = load_pipeline(str(folder))
    pipe.set_progress_bar_config(disable=True)
    assert image_size(pipe) == (dm.WIDTH, dm.HEIGHT) and default_latent_encoder(pipe) is testbed_latents
    cond = encode_texts(pipe, PROMPTS[:2], image_size(pipe))
    assert "guidance" not in cond and cond["encoder_hidden_states"].shape[1] == dm.T5_MAX_LENGTH
    data = make_data(tmp_path / "data", n=2, size=image_size(pipe))
    modules = ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]
    finetune(pipe, data, modules, steps=2, batch=2, lr=5e-2, out=tmp_path / "a", progress=False)
    call = dict(num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
    expected = pipe(PROMPTS[0], **call).images
    fresh = load_pipeline(str(folder))
    fresh.set_progress_bar_config(disable=True)
    base = fresh(PROMPTS[0], **dict(call, generator=torch.Generator().manual_seed(0))).images
    fresh.load_lora_weights(str(tmp_path / "a"))
    assert not np.array_equal(base, expected)
    assert np.array_equal(fresh(PROMPTS[0], **dict(call, generator=torch.Generator().manual_seed(0))).images, expected)

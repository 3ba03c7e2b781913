"""The localization report: a per-layer table (Markdown + JSON), a plot of scores by layer,
an image grid (A / B-patched / B-direct), and ``report.json`` / ``report.md`` with the runs
each strategy used.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetext.localize.api import LocalizeResult
from safetext.viz import image_grid

LAYER_COLUMNS = ("index", "module", "kind", "kv_share_pct", "attribution", "text_score", "b_rate", "a_rate", "ssim_masked", "toward_b", "rank", "chosen")


def layer_rows(result: LocalizeResult) -> list[dict[str, Any]]:
    """One row per candidate module: single-layer scores where measured, rank, and whether chosen."""
    ranking = result.chosen.ranking
    attribution = result.attribution.scores if result.attribution else {}
    rows: list[dict[str, Any]] = []
    for site in result.sites:
        score = result.single(site.name)
        row: dict[str, Any] = {
            "index": site.index,
            "module": site.name,
            "kind": site.kind,
            "kv_params": site.kv_params,
            "kv_share_pct": round(100.0 * site.kv_params / max(result.denoiser_params, 1), 4),
            "measured": score is not None,
            "attribution": round(attribution[site.name], 6) if site.name in attribution else None,
            "rank": ranking.index(site.name) + 1 if site.name in ranking else None,
            "chosen": site.name in result.chosen.modules,
        }
        if score is not None:
            data = score.to_dict()
            for key in ("text_score", "b_rate", "a_rate", "sim_b", "sim_a", "toward_b", "ssim_masked", "texts"):
                row[key] = data[key]
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def strategy_rows(result: LocalizeResult) -> list[dict[str, Any]]:
    rows = []
    for name, res in result.results.items():
        counts = res.run_counts()
        rows.append(
            {
                "strategy": name,
                "layer_runs": counts["layer_search"],
                "start_runs": counts["start"],
                "total_runs": counts["total"],
                "gradient_pass_runs": counts["attribution"] if name == "attribution" else None,
                "cost_runs": counts["cost"],
                "images": counts["total"] * len(result.pairs),
                "modules": ", ".join(res.modules),
                "start_step": res.start_step,
                "accepted": res.accepted,
                "text_score": res.final.text_score,
                "ssim_masked": res.final.ssim_masked,
            }
        )
    return rows


def plot_layers(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Bars: text score per layer (and attribution, scaled to its maximum); markers: B read, A read, masked SSIM.

    Chosen layers are starred; layers no run measured alone are marked n/m.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["index"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.35 * len(rows) + 2), 4.4))
    measured = [r for r in rows if r["measured"]]
    attributed = [r for r in rows if r.get("attribution") is not None]
    top = max((r["attribution"] for r in attributed), default=0.0)
    width = 0.4 if attributed and measured else 0.8
    if attributed and top > 0:
        ax.bar(
            [r["index"] + (width / 2 if measured else 0) for r in attributed],
            [r["attribution"] / top for r in attributed],
            width=width,
            color="#999999",
            label="attribution (gradient, / max)",
        )
    ax.bar(
        [r["index"] - (width / 2 if attributed else 0) for r in measured],
        [r["text_score"] for r in measured],
        width=width,
        color="#4c72b0",
        alpha=0.8,
        label="text score (0 = A, 1 = B direct)",
    )
    ax.plot([r["index"] for r in measured], [r["b_rate"] for r in measured], "o", color="#55a868", label="OCR reads B")
    ax.plot([r["index"] for r in measured], [r["a_rate"] for r in measured], "x", color="#c44e52", label="OCR reads A")
    ax.plot([r["index"] for r in measured], [r["ssim_masked"] for r in measured], "s", mfc="none", color="#8172b2", label="masked SSIM")
    for r in rows:
        if r["chosen"]:
            ax.annotate("*", (r["index"], 1.04), ha="center", fontsize=14, color="black")
        if not r["measured"]:
            ax.annotate("n/m", (r["index"], 0.02), ha="center", fontsize=7, color="grey", rotation=90)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs], fontsize=7)
    low = min([0.0] + [r.get("text_score") or 0.0 for r in rows] + [r["attribution"] / top for r in attributed if top > 0])
    ax.set_ylim(min(-0.05, low - 0.05), 1.12)
    ax.set_xlabel("attention layer (forward order; * chosen, n/m not measured)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_grid(result: LocalizeResult, path: Path) -> Path:
    key = (result.chosen.modules, result.chosen.start_step)
    patched = result.samples.get(key, [])
    base = result.baselines
    rows = []
    for i, image in enumerate(patched):
        pair = result.pairs[i]
        rows.append((f"{pair.word_a} -> {pair.word_b}: {pair.a}", [base.a_images[i], image, base.b_images[i]]))
    width = max(64, min(256, base.a_images[0].width))
    return image_grid(rows, ["A (unpatched)", "B patched into A", "B direct"], path, tile_width=width)


def write_report(result: LocalizeResult, folder: str | Path, *, model: str = "") -> dict[str, Path]:
    """Write the report files into ``folder``; returns their paths by kind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = layer_rows(result)
    strategies = strategy_rows(result)
    paths = {
        "layers_json": folder / "layers.json",
        "layers_md": folder / "layers.md",
        "plot": folder / "scores.png",
        "grid": folder / "grid.png",
        "json": folder / "report.json",
        "markdown": folder / "report.md",
    }
    paths["layers_json"].write_text(json.dumps(rows, indent=1))
    table = markdown_table(rows, LAYER_COLUMNS)
    paths["layers_md"].write_text(table + "\n")
    plot_layers(rows, paths["plot"], f"{model or result.pipeline}: single-layer patching, {len(result.pairs)} pairs")
    write_grid(result, paths["grid"])
    data = {
        "model": model,
        "pipeline": result.pipeline,
        "component": result.component,
        "steps": result.steps,
        "seed": result.seed,
        "max_start": result.max_start,
        "criteria": asdict(result.criteria),
        "settings": result.settings,
        "pairs": [p.to_dict() for p in result.pairs],
        "baselines": result.baselines.summary(),
        "strategies": {name: res.to_dict() for name, res in result.results.items()},
        "agree": result.agree,
        "attribution": result.attribution.to_dict() if result.attribution else None,
        "preset": result.preset.model_dump(mode="json", exclude_none=True),
        "pipeline_calls": result.calls,
        "images_generated": result.images,
        "seconds": round(result.seconds, 2),
        "layers": rows,
    }
    paths["json"].write_text(json.dumps(data, indent=1))
    paths["markdown"].write_text(_markdown(result, model, strategies, table))
    return paths


def _markdown(result: LocalizeResult, model: str, strategies: list[dict[str, Any]], table: str) -> str:
    base = result.baselines.summary()
    chosen = result.chosen
    lines = [
        f"# safetext localize: {model or result.pipeline}",
        "",
        f"{result.pipeline} ({result.component}), {len(result.sites)} candidate text-attention modules, "
        f"{len(result.pairs)} prompt pairs, {result.steps} steps, seed {result.seed}. "
        f"Text score from **{base['text_score_from']}** (OCR contrast between A and B direct: {base['ocr_contrast']}).",
        "",
        f"Baselines: A unpatched reads A in {base['unpatched_a']['a_rate']:.0%} and B in {base['unpatched_a']['b_rate']:.0%} of pairs; "  # type: ignore[index]
        f"B direct reads B in {base['b_direct']['b_rate']:.0%}. Mean |A - B direct| in the text box: "
        f"{base['pixel_contrast']}/255.",  # type: ignore[index]
        "",
        (
            "**Weak signal**: OCR cannot read the words and the model draws A and B almost alike, so the "
            "ranking below reflects tiny pixel differences. Re-run once the model renders the words."
            if base["weak_signal"]
            else ""
        ),
        "",
        "## Result",
        "",
        f"Modules ({chosen.strategy}): " + ", ".join(f"`{m}`" for m in chosen.modules),
        f"Start step: {chosen.start_step} of {result.steps} (preset `start: {result.preset.start}`); "
        f"text score {chosen.final.text_score:.3f}, B read {chosen.final.b_rate:.0%}, A read {chosen.final.a_rate:.0%}, "
        f"masked SSIM {chosen.final.ssim_masked:.3f}.",
        "" if chosen.accepted else "**No set met the criteria**; the preset holds the best prefix found.",
        "",
        "## Runs by strategy",
        "",
        "One run = one patched configuration over all pairs (pairs x 1 image). Baselines (2 runs) are shared and not counted. "
        "Cost = runs + the attribution strategy's gradient pass in run-equivalents (denoiser evaluations, a backward pass "
        "counted as two forwards).",
        "",
        markdown_table(
            strategies,
            ("strategy", "layer_runs", "start_runs", "total_runs", "gradient_pass_runs", "cost_runs", "images", "start_step", "accepted", "modules"),
        ),
        "",
    ]
    if result.attribution is not None:
        att = result.attribution
        lines += [
            f"Attribution pass: steps {', '.join(map(str, att.steps))} of A's trajectory, {att.seconds:.1f} s, "
            f"{att.run_equivalents:.2f} run-equivalents. Its scores are in the layer table (share of the way to B's "
            "denoiser output each module covers alone, to first order).",
            "",
        ]
    if result.agree is not None:
        lines += [f"Strategies agree on the module set: **{'yes' if result.agree else 'no'}**.", ""]
    lines += [
        "## Single layers",
        "",
        "![scores by layer](scores.png)",
        "",
        table,
        "",
        "## A / B patched / B direct",
        "",
        "![grid](grid.png)",
        "",
    ]
    return "\n".join(lines)

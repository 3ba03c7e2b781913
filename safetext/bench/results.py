"""Write the machine-readable outputs.

* ``results.json``: every metric as a github-action-benchmark entry
  (``{name, unit, value, range, extra}``); ``extra`` says which direction is better.
* ``results-smaller.json`` / ``results-bigger.json``: the same entries split by direction, to
  feed the action's ``customSmallerIsBetter`` and ``customBiggerIsBetter`` tools (one tool per
  file, so a mixed file would raise alerts the wrong way round).
* ``summary.json``: the nested summary with counts and intervals; ``records.jsonl``: one line per image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetext.bench.aggregate import CATALOG
from safetext.bench.evaluate import Record


def _fmt(value: float, unit: str) -> str:
    return f"{value * 100:.1f}" if unit == "%" else f"{value:.3f}"


def benchmark_entries(summary: dict[str, Any], meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """github-action-benchmark entries, one per (suite, method, metric) that has a value."""
    context = ", ".join(f"{k}={v}" for k, v in (meta or {}).items())
    entries: list[dict[str, Any]] = []
    for suite, body in summary["suites"].items():
        for method, metrics in body["methods"].items():
            for metric in CATALOG:
                stat = metrics.get(metric.key)
                if not isinstance(stat, dict) or stat.get("value") is None:
                    continue
                scale = 100.0 if metric.unit == "%" else 1.0
                entry: dict[str, Any] = {
                    "name": f"{suite}/{method}: {metric.label}",
                    "unit": metric.unit,
                    "value": round(float(stat["value"]) * scale, 4),
                }
                if stat.get("lo") is not None and stat.get("hi") is not None:
                    entry["range"] = f"95% CI {_fmt(stat['lo'], metric.unit)} to {_fmt(stat['hi'], metric.unit)}"
                counts = f"{stat['k']}/{stat['n']}" if "k" in stat else f"n={stat.get('n')}"
                entry["extra"] = f"{metric.direction} is better; {counts}" + (f"; {context}" if context else "")
                entries.append(entry)
    return entries


def write_results(out_dir: Path, summary: dict[str, Any], records: Sequence[Record], meta: dict[str, Any]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = benchmark_entries(summary, {k: meta[k] for k in ("model", "ocr", "steps") if k in meta})
    paths = {
        "results": out_dir / "results.json",
        "smaller": out_dir / "results-smaller.json",
        "bigger": out_dir / "results-bigger.json",
        "summary": out_dir / "summary.json",
        "records": out_dir / "records.jsonl",
    }
    paths["results"].write_text(json.dumps(entries, indent=2) + "\n")
    for direction in ("smaller", "bigger"):
        chosen = [e for e in entries if e["extra"].startswith(direction)]
        paths[direction].write_text(json.dumps(chosen, indent=2) + "\n")
    paths["summary"].write_text(json.dumps({"meta": meta, **summary}, indent=2) + "\n")
    with paths["records"].open("w") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")
    return paths

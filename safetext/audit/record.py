"""One audit-log record per guarded call, built from ``GuardResult.to_dict()``.

The record keeps what an operator reviews (action, categories, terms, layers, audit, timings)
and the prompts; :class:`AuditLog` hashes the prompts when asked to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from safetext.audit.outcome import AuditOutcome


def utc_now() -> str:
    """UTC time, ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _decisions(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    inputs = result.get("inputs") or {"prompt": result.get("decisions") or []}
    return [d for ds in inputs.values() for d in ds]


def make_record(
    result: Mapping[str, Any] | Any,
    prompts: Sequence[str] | None = None,
    *,
    audit: AuditOutcome | Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    include_decisions: bool = False,
) -> dict[str, Any]:
    """A JSON-ready record for ``result`` (a GuardResult or its ``to_dict()``).

    ``prompts`` defaults to the decisions' prompts; ``audit`` defaults to ``result["audit"]``;
    ``extra`` keys (request id, user id, model) are added last."""
    data: Mapping[str, Any] = result.to_dict() if callable(getattr(result, "to_dict", None)) else result
    decisions = list(data.get("decisions") or [])
    every = _decisions(data)
    spans = [s for d in every for s in d.get("spans") or []]
    if audit is None:
        audit = data.get("audit")
    record: dict[str, Any] = {
        "time": utc_now(),
        "action": data.get("action"),
        "blocked": data.get("blocked"),
        "actions": [d.get("action") for d in decisions],
        "policy": next((d.get("policy") for d in every if d.get("policy")), None),
        "risk": max((float(d.get("risk") or 0.0) for d in every), default=0.0),
        "categories": sorted({s["category"] for s in spans}),
        "terms": sorted({s["term"] for s in spans}),
        "preset": data.get("preset"),
        "patched_layers": list(data.get("patched_layers") or []),
        "audit": audit.to_dict() if isinstance(audit, AuditOutcome) else audit,
        "timings": dict(data.get("timings") or {}),
        "prompts": list(prompts) if prompts is not None else [d.get("prompt") for d in decisions],
        "benign_prompts": [d.get("benign_prompt") for d in decisions],
    }
    if include_decisions:
        record["inputs"] = data.get("inputs") or {"prompt": decisions}
    if extra:
        record.update(extra)
    return record

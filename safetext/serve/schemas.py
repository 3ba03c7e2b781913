"""Request and response bodies. Every request model forbids unknown fields, so a typo is a 422 naming it."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from safetext.serve.config import parse_size

Prompts = Union[str, list[str]]

#: Largest seed a request may give (torch generators take 64-bit seeds; JSON clients stay exact below 2**53).
MAX_SEED = 2**63 - 1


class CheckRequest(BaseModel):
    """Body of ``POST /v1/check``. ``prompt_2``/``prompt_3`` are the second and third text encoders' prompts (SDXL, SD3)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompts
    prompt_2: Prompts | None = None
    prompt_3: Prompts | None = None
    policy: str | None = None


class DecisionOut(BaseModel):
    """One decision as the API returns it: the engine's record plus LLM Guard's sanitized prompt and validity flag."""

    model_config = ConfigDict(extra="forbid")

    action: str
    prompt: str
    benign_prompt: str | None
    sanitized_prompt: str | None
    is_valid: bool
    flagged: bool
    risk: float
    spans: list[dict[str, Any]]
    reasons: list[str]


def decision_out(decision: Any) -> DecisionOut:
    """The API form of a :class:`~safetext.policy.decision.Decision`."""
    return DecisionOut(
        action=decision.action.value,
        prompt=decision.prompt,
        benign_prompt=decision.benign_prompt,
        sanitized_prompt=decision.sanitized_prompt,
        is_valid=decision.is_valid,
        flagged=decision.flagged,
        risk=decision.risk,
        spans=[span.model_dump(mode="json") for span in decision.spans],
        reasons=list(decision.reasons),
    )


class CheckResponse(BaseModel):
    """Body of a successful check. ``decisions_2``/``decisions_3`` are set when the request carried ``prompt_2``/``prompt_3``."""

    model_config = ConfigDict(extra="forbid")

    policy: str
    decisions: list[DecisionOut]
    decisions_2: list[DecisionOut] | None = None
    decisions_3: list[DecisionOut] | None = None


class ImageRequest(BaseModel):
    """Body of ``POST /v1/images/generations``: the OpenAI images API plus safetext's extensions.

    ``model`` and ``user`` are accepted so OpenAI clients work unchanged; the served model is
    the one the server was started with. ``seed``, ``steps``, ``guidance_scale``, ``policy``
    and ``prompt_2`` are extensions; unset ones take the model profile's defaults.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1)
    size: str | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    model: str | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    steps: int | None = Field(default=None, ge=1)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    policy: str | None = None
    prompt_2: str | None = Field(default=None, min_length=1)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value


class ImageData(BaseModel):
    """One image, as OpenAI's ``data[i]``."""

    b64_json: str


class GenerationInfo(BaseModel):
    """What the guard did for this request. ``audit`` is the OCR audit of this request's images (None when off)."""

    decision: DecisionOut
    patched_layers: list[str]
    audit: dict[str, Any] | None
    timings: dict[str, float]
    seed: int
    size: str
    steps: int
    batch_images: int = Field(description="Images in the pipeline call this request shared.")


class ImageResponse(BaseModel):
    """Body of a successful generation."""

    created: int
    data: list[ImageData]
    safetext: GenerationInfo

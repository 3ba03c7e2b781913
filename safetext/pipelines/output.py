"""What a diffusers pipeline call returned, read the same way everywhere."""

from __future__ import annotations

from typing import Any


def images_of(output: Any) -> Any:
    """The images of a pipeline output: ``output.images``, the first item of a
    ``return_dict=False`` tuple, or the output itself."""
    if hasattr(output, "images"):
        return output.images
    if isinstance(output, tuple) and output:
        return output[0]
    return output

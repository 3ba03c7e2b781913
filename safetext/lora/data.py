"""The training data of ``safetext finetune``: an image folder with a ``metadata.jsonl``.

The layout is that of diffusers' training examples and ``datasets`` image folders: one
JSON object per line, ``{"file_name": "0001.png", "text": "a sign that says ..."}``, with
the file name relative to the folder. :func:`load_examples` checks every line and image
before training starts and raises :class:`~safetext.errors.FinetuneError` naming the file
and line of the first problem, so a bad data set never costs a model load or a partial run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from safetext.errors import FinetuneError

METADATA_FILE = "metadata.jsonl"


@dataclass(frozen=True)
class Example:
    """One training image and its prompt."""

    image: Path
    text: str
    line: int  # line of metadata.jsonl it came from (1-based)


def _bad(path: Path, line: int | None, message: str) -> FinetuneError:
    where = f"{path}:{line}" if line else str(path)
    return FinetuneError(f"{where}: {message}")


def _check_image(meta: Path, line: int, path: Path, size: tuple[int, int] | None) -> None:
    if not path.is_file():
        raise _bad(meta, line, f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            found = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _bad(meta, line, f"cannot read image {path}: {exc}") from None
    if size is not None and found != size:
        raise _bad(meta, line, f"image {path} is {found[0]}x{found[1]} px; the model takes {size[0]}x{size[1]} (width x height)")


def load_examples(folder: str | Path, size: tuple[int, int] | None = None) -> list[Example]:
    """Read and check ``folder/metadata.jsonl``; ``size`` (width, height) is the image size the model takes.

    Raises :class:`FinetuneError` for a missing folder or metadata file, an empty data set,
    a line that is not a JSON object, a missing or empty ``file_name`` or ``text``, and an
    image that is missing, unreadable or of another size.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FinetuneError(f"{folder}: data folder not found" if not folder.exists() else f"{folder}: not a folder")
    meta = folder / METADATA_FILE
    if not meta.is_file():
        raise _bad(folder, None, f"no {METADATA_FILE} (one JSON object per line: {{\"file_name\": ..., \"text\": ...}})")
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(meta, None, f"cannot read: {exc}") from None
    examples: list[Example] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _bad(meta, number, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(row, dict):
            raise _bad(meta, number, "expected a JSON object with 'file_name' and 'text'")
        name, text = row.get("file_name"), row.get("text")
        if not isinstance(name, str) or not name.strip():
            raise _bad(meta, number, "missing 'file_name' (the image's path relative to the folder)")
        if not isinstance(text, str) or not text.strip():
            raise _bad(meta, number, f"missing 'text' (the prompt of {name})")
        path = folder / name
        _check_image(meta, number, path, size)
        examples.append(Example(path, text, number))
    if not examples:
        raise _bad(meta, None, "the data set is empty (no image lines)")
    return examples


def write_examples(folder: str | Path, items: list[tuple[Image.Image, str]]) -> Path:
    """Write ``(image, prompt)`` pairs as a data folder :func:`load_examples` reads (PNG files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, text) in enumerate(items):
        name = f"{i:05d}.png"
        image.save(folder / name)
        rows.append(json.dumps({"file_name": name, "text": text}))
    (folder / METADATA_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder

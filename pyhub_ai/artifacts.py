"""Rich tool results (``ToolMessage.artifact``) made storable.

A tool can return an image (an :class:`ImageArtifact`) or a table (a pandas ``DataFrame``, or
anything with ``columns`` and ``itertuples``); ``store_artifact()`` saves images as files in
Django's default storage (never base64 inside the message row) and turns tables into plain
JSON, so ``pyhub_ai.codec`` stores the tool message like any other. The page and the admin
render them escaped.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

#: Rows of a table kept with the message (the tool's text result can summarise the rest).
MAX_TABLE_ROWS = 200

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}  # no SVG: it can carry scripts


@dataclass(frozen=True)
class ImageArtifact:
    """An image a tool produced: ``return "A chart of sales by month.", ImageArtifact(png_bytes)``
    from a tool with ``response_format="content_and_artifact"``."""

    data: bytes
    mime: str = "image/png"
    alt: str = ""


def store_artifact(artifact: Any) -> Any:
    """A JSON-storable form of ``artifact`` (images saved to storage; tables as rows)."""
    if artifact is None:
        return None
    if isinstance(artifact, ImageArtifact):
        return _store_image(artifact)
    if hasattr(artifact, "columns") and hasattr(artifact, "itertuples"):
        return _table(artifact)
    try:
        json.dumps(artifact)
    except (TypeError, ValueError):
        return {"type": "text", "text": repr(artifact)[:2000]}
    return artifact


def _store_image(image: ImageArtifact) -> dict[str, Any]:
    extension = _EXTENSIONS.get(image.mime)
    if extension is None:
        raise ValueError(f"Unsupported image type {image.mime!r}; use one of {', '.join(_EXTENSIONS)}.")
    name = default_storage.save(f"pyhub_ai/artifacts/{uuid.uuid4().hex}.{extension}", ContentFile(image.data))
    return {"type": "image", "name": name, "url": default_storage.url(name), "mime": image.mime, "alt": image.alt}


def _table(frame: Any) -> dict[str, Any]:
    rows = [[_cell(value) for value in row] for row in frame.head(MAX_TABLE_ROWS).itertuples(index=False)]
    return {"type": "table", "columns": [str(column) for column in frame.columns], "rows": rows, "total_rows": len(frame)}


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if value != value else value  # NaN has no JSON form
    item = getattr(value, "item", None)  # numpy scalars
    return _cell(item()) if callable(item) else str(value)

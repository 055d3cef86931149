"""The parts a message's content may be made of besides plain text: `TextPart` and `ImagePart`.

An image travels either inline (`data`: raw bytes, or a base64 string as users often have it) or as a
`url` (only OpenAI and Anthropic fetch URLs). Inline data is kept as bytes, decoded once here; its
`media_type` is read from the magic bytes when absent, because every wire wants one and users rarely
know it. Only the formats all four vision APIs accept are allowed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def sniff_media_type(data: bytes) -> str | None:
    """The image format the first bytes of `data` announce, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class TextPart(BaseModel):
    """`{"type": "text", "text": ...}`"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """`{"type": "image", "data": bytes | base64 str, "media_type"?}` or `{"type": "image", "url"}`."""

    # JSON carries the bytes as base64, which `data` reads back: a dumped message validates again
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64")

    type: Literal["image"] = "image"
    data: bytes | None = None  # the decoded image
    media_type: str | None = None
    url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        # A str `data` is base64: decode it here, or pydantic would take its characters as the bytes.
        if isinstance(value, dict) and isinstance(value.get("data"), str):
            try:
                raw = base64.b64decode(value["data"], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("data: not valid base64") from None
            value = {**value, "data": raw}
        return value

    @model_validator(mode="after")
    def _check(self) -> ImagePart:
        if (self.data is None) == (self.url is None):
            raise ValueError("an image needs exactly one of 'data' or 'url'")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url: must be http(s), got {self.url[:40]!r}")
            return self
        assert self.data is not None
        if not self.data:
            raise ValueError("data: empty image")
        sniffed = sniff_media_type(self.data)
        if self.media_type is None:
            if sniffed is None:
                raise ValueError(f"media_type: not given and not recognised from the data; one of {MEDIA_TYPES}")
            object.__setattr__(self, "media_type", sniffed)  # frozen: set once, while validating
        elif self.media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type: must be one of {', '.join(MEDIA_TYPES)}, got {self.media_type!r}")
        return self

    def base64(self) -> str:
        """The inline data as base64 text (what most wires carry)."""
        if self.data is None:
            raise ValueError("a URL image has no inline data")
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """`data:<media_type>;base64,...` for inline data, else the URL (OpenAI's `image_url`)."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.base64()}"


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]

"""Photos from a phone's camera, made smaller before sealing: a reader needs a clear picture, not 12 MB.

Every photo is decoded, turned upright (EXIF orientation), scaled to at most MAX_SIDE pixels and saved
again as JPEG without its metadata (a phone writes where and when it was taken into EXIF). All of it
happens in memory: nothing of a photo touches the disk.
"""
from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SIDE = 1600
SMALLER_SIDE = 1024
QUALITY = 80
Image.MAX_IMAGE_PIXELS = 60_000_000  # refuse decompression bombs


class NotAPhoto(ValueError):
    pass


def shrink(data: bytes, *, max_side: int = MAX_SIDE, quality: int = QUALITY) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            img.thumbnail((max_side, max_side))
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality, optimize=True)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise NotAPhoto("not a photo") from None


def shrink_all(photos: list[bytes], budget: int) -> list[bytes]:
    """All photos within ``budget`` bytes together: first at MAX_SIDE, then smaller; NotAPhoto or a
    ValueError when they cannot fit."""
    for side, quality in ((MAX_SIDE, QUALITY), (SMALLER_SIDE, 70), (640, 60)):
        out = [shrink(p, max_side=side, quality=quality) for p in photos]
        if sum(len(p) for p in out) <= budget:
            return out
    raise ValueError("the photos do not fit")

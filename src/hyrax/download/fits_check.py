"""Checking a FITS file held in memory: complete, and the shape of its image, from its headers alone.

A cutout arrives as bytes; reading its headers here (no file, no astropy) costs microseconds and catches
a file cut short inside a header or data unit (a file cut exactly between two HDUs reads as complete: the
tar member's recorded size guards against that), so nothing incomplete is saved as a cutout.

>>> from astropy.io import fits
>>> import io, numpy as np
>>> buffer = io.BytesIO()
>>> fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 4), np.float32))]).writeto(buffer)
>>> image_shape_of(buffer.getvalue())
(3, 4)
>>> image_shape_of(buffer.getvalue()[:-100]) is None
True
"""

from __future__ import annotations

BLOCK = 2880
CARD = 80


def _header(data: bytes, start: int) -> tuple[dict[str, str], int] | None:
    """The cards of the header at ``start`` ({keyword: raw value}) and where its data begins."""
    cards: dict[str, str] = {}
    position = start
    while position + BLOCK <= len(data):
        block = data[position : position + BLOCK]
        position += BLOCK
        for offset in range(0, BLOCK, CARD):
            card = block[offset : offset + CARD].decode("ascii", errors="replace")
            keyword = card[:8].strip()
            if keyword == "END":
                return cards, position
            if card[8:10] == "= ":
                cards[keyword] = card[10:].split("/", 1)[0].strip()
    return None


def image_shape_of(data: bytes) -> tuple[int, int] | None:
    """(height, width) of the first HDU holding a 2-D (or larger) image, or None when ``data`` is not a
    complete FITS file (a header or data unit cut short) or holds no image."""
    if not data.startswith(b"SIMPLE  ="):
        return None
    position, shape = 0, None
    while position < len(data):
        parsed = _header(data, position)
        if parsed is None:
            return None
        cards, position = parsed
        try:
            axes = [int(cards[f"NAXIS{n}"]) for n in range(1, int(cards.get("NAXIS", "0")) + 1)]
            bits = abs(int(cards["BITPIX"]))
            groups, parameters = int(cards.get("GCOUNT", "1")), int(cards.get("PCOUNT", "0"))
        except (KeyError, ValueError):
            return None
        size = 0
        if axes:
            elements = 1
            for axis in axes:
                elements *= axis
            size = bits // 8 * groups * (parameters + elements)
        position += -(-size // BLOCK) * BLOCK  # data units are padded to whole blocks
        if position > len(data):
            return None  # the data unit is cut short
        if shape is None and size:
            shape = _image_shape(cards, axes)
    return shape


def _image_shape(cards: dict[str, str], axes: list[int]) -> tuple[int, int] | None:
    """(NAXIS2, NAXIS1) of an image HDU, or of the image a tile-compressed table holds."""
    if cards.get("ZIMAGE") == "T":  # tile-compressed: the image's axes are ZNAXISn
        try:
            return int(cards["ZNAXIS2"]), int(cards["ZNAXIS1"])
        except (KeyError, ValueError):
            return None
    is_image = "XTENSION" not in cards or cards["XTENSION"].strip("' ") == "IMAGE"
    return (axes[1], axes[0]) if is_image and len(axes) >= 2 else None

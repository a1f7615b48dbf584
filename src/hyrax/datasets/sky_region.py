"""A region of the sky from the config (``cone`` or ``box``), as the LSDB search that reads only the HATS
partitions it touches.

>>> region_of({"cone": [150.1, 2.2, 3600.0], "box": False}, "data_set.LSDBStreamDataset")
{'cone': [150.1, 2.2, 3600.0]}

``cone = [ra, dec, radius_arcsec]`` (degrees, degrees, arcseconds: LSDB's ``ConeSearch``);
``box = [ra_min, ra_max, dec_min, dec_max]`` (degrees: LSDB's ``BoxSearch``; ``ra_min > ra_max`` wraps
through 0). The region is kept as plain lists (it travels to the copying process as JSON) and made
into an LSDB search only where LSDB is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyrax.errors import ConfigError

_SHAPES = {"cone": ("ra", "dec", "radius_arcsec"), "box": ("ra_min", "ra_max", "dec_min", "dec_max")}


def region_of(settings: Mapping, where: str) -> dict[str, list[float]] | None:
    """The region that ``settings`` (a ``[data_set.<class>]`` table) selects, checked; None for the whole sky.
    ``where`` names the table in errors."""
    chosen = {}
    for shape, names in _SHAPES.items():
        value = settings.get(shape, False)
        if value is False or value is None:
            continue
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != len(names):
            raise ConfigError(
                f"{where}.{shape} = {value!r}: give [{', '.join(names)}] (degrees"
                f"{', arcseconds' if shape == 'cone' else ''}), or false for the whole sky."
            )
        if shape == "cone" and not (numbers[2] > 0 and -90 <= numbers[1] <= 90):
            raise ConfigError(
                f"{where}.cone = {value!r}: dec must be within [-90, 90] and the radius above 0."
            )
        if shape == "box" and not (-90 <= numbers[2] < numbers[3] <= 90):
            raise ConfigError(
                f"{where}.box = {value!r}: dec_min must be below dec_max, both within [-90, 90]."
            )
        chosen[shape] = numbers
    if len(chosen) > 1:
        raise ConfigError(f"{where} sets both cone and box: choose one (set the other to false).")
    return chosen or None


def search_filter(region: Mapping[str, list[float]] | None) -> Any:
    """The LSDB search of a region (None for None)."""
    if not region:
        return None
    import lsdb

    if "cone" in region:
        ra, dec, radius = region["cone"]
        return lsdb.ConeSearch(ra=ra, dec=dec, radius_arcsec=radius)
    ra_min, ra_max, dec_min, dec_max = region["box"]
    return lsdb.BoxSearch(ra=(ra_min, ra_max), dec=(dec_min, dec_max))

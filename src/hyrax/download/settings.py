"""The ``[download]`` settings, checked once at the start of a download with errors that name the key.

>>> from hyrax.config import ConfigManager
>>> settings = DownloadSettings.from_config(ConfigManager().config)
>>> settings.connections, settings.chunk_size
(4, 990)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hyrax.errors import ConfigError

if TYPE_CHECKING:
    from hyrax.download.soda import SodaOptions

#: The HSC service refuses more parallel connections than this.
MAX_CONNECTIONS = 10
#: The HSC service refuses coordinate lists longer than this.
MAX_LINES_PER_REQUEST = 990
#: Parallel connections to the Rubin cutout service (one cutout per request): a courteous ceiling.
MAX_SODA_CONNECTIONS = 32
#: Cutouts a thread fetches in turn before their manifest rows are written (download.service = "lsst").
SODA_LINES_PER_TASK = 32
SERVICES = ("hsc", "lsst")
_DEGREES_PER = {"asec": 1 / 3600, "amin": 1 / 60, "deg": 1.0}

_SIZE = re.compile(r"^\d+(\.\d*)?(asec|amin|deg)$")
#: Characters that would break the cutout file name (fields are joined by "_") or the coordinate list.
_NAME_BREAKERS = re.compile(r"[_/\s]")


@dataclass(frozen=True)
class DownloadSettings:
    """What ``hyrax download`` does, from ``[download]`` and ``general.data_dir``."""

    catalog: Path
    data_dir: Path
    service_url: str
    filters: tuple[str, ...]
    width: str
    height: str
    image_type: str
    rerun: str
    image: bool
    mask: bool
    variance: bool
    offset: int
    num_sources: int | None  # None: every object after the offset
    connections: int
    chunk_size: int
    attempts: int
    retry_wait: float
    timeout: float
    stats_interval: float
    service: str = "hsc"
    soda: SodaOptions | None = None  # download.service = "lsst": [download.lsst]
    soda_url: str = ""

    @classmethod
    def from_config(cls, config: Mapping) -> DownloadSettings:
        """Settings from a resolved config; a value out of range is a ConfigError naming its key."""
        section = config["download"]
        service = str(section.get("service", "hsc"))
        if service not in SERVICES:
            raise ConfigError(
                f'download.service must be "hsc" (the HSC-SSP das_cutout service) or "lsst" (the Rubin Science '
                f"Platform's SODA cutout service, set up in [download.lsst]); got {service!r}."
            )
        filters = section["filter"]
        if not filters or not all(isinstance(f, str) and f and not _NAME_BREAKERS.search(f) for f in filters):
            raise ConfigError(
                f"download.filter must be a non-empty list of filter names without '_', '/' or spaces, such "
                f'as ["HSC-G", "HSC-I"]; got {filters!r}.'
            )
        if len(set(filters)) != len(filters):
            raise ConfigError(f"download.filter lists a filter twice: {filters!r}. List each once.")
        for key in ("sw", "sh"):
            if not _SIZE.match(str(section[key])):
                raise ConfigError(
                    f'download.{key} must be a number with a unit (asec, amin or deg), such as "22asec" or '
                    f'"0.01deg"; got {section[key]!r}.'
                )
        rerun = str(section["rerun"])
        if not rerun or re.search(r"\s", rerun):
            raise ConfigError(f'download.rerun must be a name such as "pdr3_wide"; got {rerun!r}.')
        if not (section["image"] or section["mask"] or section["variance"]):
            raise ConfigError(
                "download.image, download.mask and download.variance are all false: a cutout needs at least "
                "one plane. Set download.image = true."
            )
        url = str(section["service_url"]).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"download.service_url must start with https:// (or http://); got {section['service_url']!r}."
            )
        num_sources = int(section["num_sources"])
        soda, soda_url = _soda(section, filters) if service == "lsst" else (None, "")
        most, why = (
            (MAX_SODA_CONNECTIONS, "a courteous limit")
            if soda
            else (MAX_CONNECTIONS, "the HSC service's limit")
        )
        return cls(
            catalog=Path(str(section["fits_file"])).expanduser(),
            data_dir=Path(str(config["general"]["data_dir"])).expanduser(),
            service_url=url,
            filters=tuple(filters),
            width=str(section["sw"]),
            height=str(section["sh"]),
            image_type=str(section["type"]),
            rerun=rerun,
            image=bool(section["image"]),
            mask=bool(section["mask"]),
            variance=bool(section["variance"]),
            offset=_at_least(section, "offset", 0),
            num_sources=None if num_sources == -1 else _at_least(section, "num_sources", 0),
            connections=_between(section, "concurrent_connections", 1, most, why),
            chunk_size=min(
                _between(section, "chunk_size", 1, MAX_LINES_PER_REQUEST, "the HSC service's limit"),
                SODA_LINES_PER_TASK if soda else MAX_LINES_PER_REQUEST,
            ),
            attempts=_at_least(section, "retries", 1),
            retry_wait=_non_negative(section, "retry_wait"),
            timeout=_positive(section, "timeout"),
            stats_interval=_positive(section, "stats_print_interval"),
            service=service,
            soda=soda,
            soda_url=soda_url,
        )


def degrees(size: str) -> float:
    """ "22asec" -> 0.00611 degrees (sizes are checked against _SIZE first)."""
    match = _SIZE.match(size)
    return float(size[: match.start(2)]) * _DEGREES_PER[match.group(2)]


def _soda(section: Mapping, filters: list[str]) -> tuple[SodaOptions, str]:
    """[download.lsst] checked: the SODA options and the service's address."""
    from hyrax.download.soda import LSST_BANDS, SHAPES, SodaOptions

    lsst = section.get("lsst", {})
    unknown = [f for f in filters if f not in LSST_BANDS]
    if unknown:
        raise ConfigError(
            f"download.filter lists {', '.join(map(repr, unknown))}, which are not Rubin bands; with "
            f'download.service = "lsst" list some of {", ".join(LSST_BANDS)}, such as ["g", "r", "i"].'
        )
    shape = str(lsst.get("shape", "circle"))
    if shape not in SHAPES:
        raise ConfigError(f'download.lsst.shape must be "circle" or "box"; got {shape!r}.')
    template = str(lsst.get("dataset_id", ""))
    options = SodaOptions(template, shape, degrees(str(section["sw"])), degrees(str(section["sh"])))
    try:
        columns = options.columns(filters)
        template.replace("{band}", filters[0]).format(**{name: "x" for name in columns})
    except (ValueError, IndexError, KeyError) as error:
        columns = []
        problem = str(error)
    else:
        problem = "" if columns else "it names no catalog column"
    if problem:
        raise ConfigError(
            f"download.lsst.dataset_id = {template!r} is not a template of catalog columns ({problem}). Write "
            f"the image ID with the catalog columns that make it in braces, and {{band}} for the band, such as "
            f'"{{image_id_{{band}}}}" (the columns image_id_g, image_id_r...).'
        )
    url = str(lsst.get("service_url", "")).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"download.lsst.service_url must start with https:// (or http://); got {lsst.get('service_url')!r}."
        )
    return options, url


def _between(section: Mapping, key: str, low: int, high: int, why: str) -> int:
    value = section[key]
    if not low <= value <= high:
        raise ConfigError(f"download.{key} must be from {low} to {high} ({why}); got {value}.")
    return int(value)


def _at_least(section: Mapping, key: str, low: int) -> int:
    value = section[key]
    if value < low:
        extra = " (or -1 for every object)" if key == "num_sources" else ""
        raise ConfigError(f"download.{key} must be at least {low}{extra}; got {value}.")
    return int(value)


def _positive(section: Mapping, key: str) -> float:
    value = section[key]
    if not value > 0:
        raise ConfigError(f"download.{key} must be a positive number of seconds; got {value}.")
    return float(value)


def _non_negative(section: Mapping, key: str) -> float:
    value = section[key]
    if value < 0:
        raise ConfigError(f"download.{key} must be 0 or more seconds; got {value}.")
    return float(value)

"""Alert packets as numpy: ZTF and Rubin alerts (Avro) and plain JSON messages, decoded into flat samples.

A message is recognised by its first bytes:

* ``Obj\\x01``: an Avro object container file holding one alert with its schema, as ZTF sends them;
* ``\\x00`` then a 4-byte schema id: the Confluent wire format Rubin sends (schemaless Avro after the
  header); its schema is ``data_set.KafkaStreamDataset.schema_file`` (an ``.avsc``, with the files it
  names beside it), else, when the ``lsst-alert-packet`` package is installed, the Rubin alert schema of
  that id's version;
* ``{``: a JSON object (the published Hyrax's stream format);
* ``PAR1``: a Parquet file of one alert in the layout brokers export (Fink, the ZTF archive: the alert's
  fields as columns, records as structs, stamps as binary); archives of many alerts are read by
  :class:`~hyrax.datasets.alert_archive.AlertParquetDataset`.

The alert becomes one flat dict: top-level scalars under their names, the scalars of nested records
(``candidate``, ``diaSource``, ``diaObject``) as ``<record>.<field>``, cutout stamps (bytes fields named
``cutout...``: FITS, gzipped or not) as float32 2-D arrays under their names, and, when the science,
template and difference stamps are all there, ``image``: the three stacked (3, height, width). Lists
(previous detections) are left out. ``object_id`` and ``alert_id`` are set from the usual names
(``objectId``/``diaObject.diaObjectId``/``diaSource.diaObjectId``; ``candid``/``alertId``).

Anything that cannot be decoded raises :class:`AlertError` with the reason (the stream records it as
skipped and goes on).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.errors import HyraxError

AVRO_CONTAINER = b"Obj\x01"
PARQUET = b"PAR1"
STAMP_ORDER = ("science", "template", "difference")
ID_NAMES = ("objectId", "diaObject.diaObjectId", "diaSource.diaObjectId", "object_id", "diaObjectId")
ALERT_ID_NAMES = ("candid", "alertId", "diaSourceId", "alert_id", "diaSource.diaSourceId")


class AlertError(HyraxError):
    """A message that is not a readable alert (the reason is the message)."""


class AlertDecoder:
    """Decodes message values; ``schema``: the parsed writer schema of Confluent-framed messages."""

    def __init__(self, schema_file: str | Path | None = None):
        self._schema = _load_schema(Path(schema_file)) if schema_file else None
        self._by_id: dict[int, Any] = {}

    def decode(self, value: bytes | None, id_names: tuple[str, ...] = ()) -> dict[str, Any]:
        """The message as one flat sample; ``id_names``: fields that name the alert before the usual ones
        (the data request's primary_id_field, as for a JSON message ``{"id": ...}``)."""
        if not value:
            raise AlertError("the message is empty")
        if value.startswith(AVRO_CONTAINER):
            record = self._container(value)
        elif value[:1] == b"\x00" and len(value) > 5:
            record = self._framed(value)
        elif value.startswith(PARQUET):
            record = self._parquet(value)
        elif value.lstrip()[:1] == b"{":
            try:
                record = json.loads(value)
            except (ValueError, UnicodeDecodeError) as error:
                raise AlertError(f"the message is not valid JSON ({error})") from None
            if not isinstance(record, dict):
                raise AlertError("the JSON message is not an object")
        else:
            raise AlertError(
                f"the message is neither an Avro alert (container or Confluent wire format), a Parquet alert nor "
                f"JSON "
                f"(it starts with {value[:8]!r})"
            )
        return flatten(record, id_names)

    def _container(self, value: bytes) -> dict:
        import fastavro

        try:
            records = list(fastavro.reader(io.BytesIO(value)))
        except Exception as error:  # fastavro raises many kinds for a damaged file
            raise AlertError(f"the Avro alert cannot be read ({type(error).__name__}: {error})") from None
        if len(records) != 1:
            raise AlertError(f"the Avro message holds {len(records)} records, not one alert")
        return records[0]

    def _parquet(self, value: bytes) -> dict:
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(io.BytesIO(value)).to_pylist()
        except Exception as error:  # pyarrow raises several kinds for a damaged file
            raise AlertError(f"the Parquet alert cannot be read ({type(error).__name__}: {error})") from None
        if len(records) != 1:
            raise AlertError(
                f"the Parquet message holds {len(records)} rows, not one alert (read an archive of alerts "
                f"with AlertParquetDataset)"
            )
        return records[0]

    def _framed(self, value: bytes) -> dict:
        import fastavro

        (schema_id,) = struct.unpack(">I", value[1:5])
        schema = self._schema or self._registry_schema(schema_id)
        try:
            return fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, schema)
        except Exception as error:
            raise AlertError(
                f"the Avro alert (schema id {schema_id}) cannot be read with its schema ({type(error).__name__}: "
                f"{error})"
            ) from None

    def _registry_schema(self, schema_id: int):
        if schema_id not in self._by_id:
            self._by_id[schema_id] = _rubin_schema(schema_id)
        return self._by_id[schema_id]


def _load_schema(path: Path):
    import fastavro

    if not path.is_file():
        raise HyraxError(f"data_set.KafkaStreamDataset.schema_file = '{path}' does not exist.")
    named: dict = {}
    # The files of a multi-file schema (Rubin's) lie beside the top one: load them first.
    for other in sorted(path.parent.glob("*.avsc")):
        if other != path:
            with contextlib.suppress(Exception):  # a sibling that is not needed may not parse alone
                fastavro.schema.load_schema(str(other), named_schemas=named)
    return fastavro.schema.load_schema(str(path), named_schemas=named)


def _rubin_schema(schema_id: int):
    """Rubin's alert schema of a registry id (major * 100 + minor, as Rubin numbers them)."""
    try:
        from importlib.resources import files

        root = files("lsst.alert.packet") / "schema"
    except ModuleNotFoundError:
        raise AlertError(
            f"the message is a Confluent-framed Avro alert (schema id {schema_id}) and no schema is known: set "
            f"data_set.KafkaStreamDataset.schema_file to its .avsc, or pip install lsst-alert-packet for "
            f"Rubin's."
        ) from None
    major, minor = divmod(schema_id, 100)
    path = Path(str(root / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"))
    if not path.is_file():
        raise AlertError(
            f"no Rubin alert schema {major}.{minor} (schema id {schema_id}) in lsst-alert-packet: set "
            f"data_set.KafkaStreamDataset.schema_file."
        )
    return _load_schema(path)


def flatten(record: Mapping[str, Any], id_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """An alert record as one flat sample (see the module's docstring)."""
    sample: dict[str, Any] = {}
    stamps: dict[str, np.ndarray] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            prefix = key + "."
            for inner, item in value.items():  # ~190 fields a Rubin alert: the exact-type test first
                if item is None:
                    sample[prefix + inner] = np.nan
                elif type(item) in _SCALAR_TYPES or _is_scalar(item):
                    sample[prefix + inner] = item
                elif isinstance(item, bytes | bytearray) and "cutout" in inner.lower():
                    stamps[prefix + inner] = _stamp(item, prefix + inner)
        elif isinstance(value, bytes | bytearray):
            if key.lower().startswith("cutout"):
                stamps[key] = _stamp(value, key)
        elif isinstance(value, list) and (array := _numeric_array(value)) is not None:
            sample[key] = array  # a JSON image (nested lists) or vector
        elif _is_scalar(value):
            sample[key] = np.nan if value is None else value  # a null field: NaN, as missing numbers are
    # ZTF nests each stamp: {"cutoutScience": {"fileName": ..., "stampData": bytes}}
    for key, value in record.items():
        if isinstance(value, dict) and isinstance(value.get("stampData"), bytes | bytearray):
            stamps[key] = _stamp(value["stampData"], key)
    sample.update(stamps)
    ordered = [find_stamp(stamps, kind) for kind in STAMP_ORDER]
    # Stamps of different shapes (one cut at a CCD edge) are stacked by the datasets, which cut or pad
    # them to one size (hyrax.datasets.images).
    if "image" not in sample and all(s is not None for s in ordered) and len({s.shape for s in ordered}) == 1:
        sample["image"] = np.stack(ordered)
    elif "image" in sample:
        sample["image"] = np.asarray(sample["image"], dtype=np.float32)
    for target, names in (("object_id", (*id_names, *ID_NAMES)), ("alert_id", (*id_names, *ALERT_ID_NAMES))):
        if target not in sample or target == "object_id":
            found = next((sample[n] for n in names if sample.get(n) is not None), None)
            if found is not None:
                sample[target] = str(found) if target == "object_id" else found
    if "alert_id" not in sample:
        raise AlertError(f"the alert has no id (none of {', '.join((*id_names, *ALERT_ID_NAMES))})")
    if "object_id" not in sample:
        sample["object_id"] = str(sample["alert_id"])
    return sample


def find_stamp(sample: Mapping[str, Any], kind: str) -> np.ndarray | None:
    """The stamp of ``kind`` ("science", "template", "difference") among a sample's arrays, or None."""
    for key, value in sample.items():
        if (
            kind in key.lower()
            and "cutout" in key.lower()
            and isinstance(value, np.ndarray)
            and value.ndim == 2
        ):
            return value
    return None


def _numeric_array(value: list) -> np.ndarray | None:
    """A JSON list of numbers, or of equal-length lists of numbers, as float32; else None."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):  # strings, ragged lists
        return None
    return array if array.size else None


_SCALAR_TYPES = frozenset((float, int, str, bool))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _plain_image(raw: bytes) -> np.ndarray | None:
    """The first HDU's 2-D image read straight from the bytes (tens of microseconds, where astropy takes a
    quarter of a millisecond); None for anything else (extensions, compression, scaling), left to astropy."""
    from hyrax.download.fits_check import _header

    parsed = _header(raw, 0) if raw.startswith(b"SIMPLE  =") else None
    if parsed is None:
        return None
    cards, start = parsed
    try:
        if (
            int(cards.get("NAXIS", "0")) != 2
            or cards.get("BZERO", "0") not in ("0", "0.0")
            or cards.get("BSCALE", "1") not in ("1", "1.0")
        ):
            return None
        width, height, dtype = int(cards["NAXIS1"]), int(cards["NAXIS2"]), _BITPIX[int(cards["BITPIX"])]
    except (KeyError, ValueError):
        return None
    size = width * height * np.dtype(dtype).itemsize
    if start + size > len(raw):
        raise AlertError("a stamp's FITS data is cut short")
    return (
        np.frombuffer(raw, dtype=dtype, count=width * height, offset=start)
        .reshape(height, width)
        .astype(np.float32)
    )


def _stamp(data: bytes, name: str) -> np.ndarray:
    """A cutout stamp (FITS, possibly gzipped) as float32 2-D; non-finite pixels are kept (NaN)."""
    from astropy.io import fits

    raw = bytes(data)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise AlertError(f"the stamp {name} is not valid gzip ({error})") from None
    fast = _plain_image(raw)
    if fast is not None:
        return fast
    try:
        with fits.open(io.BytesIO(raw)) as hdus:
            for hdu in hdus:
                if hdu.data is not None and hdu.is_image and hdu.data.ndim == 2:
                    return np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError, IndexError) as error:
        raise AlertError(f"the stamp {name} is not a readable FITS image ({error})") from None
    raise AlertError(f"the stamp {name} holds no 2-D image")

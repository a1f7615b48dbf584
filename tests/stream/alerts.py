"""Alert packets for the stream tests: Rubin's published Avro schema (from the lsst-alert-packet
package), in the Confluent wire format Rubin's alert stream uses (and as Avro container files, as ZTF
sends them), with cutout stamps made of real galaxies (the bundled DECaLS images: each galaxy's three
bands are the science, template and difference stamps, FITS as the alerts carry them)."""

from __future__ import annotations

import io
import json
import struct
from functools import cache

import numpy as np

SCHEMA_ID = 1101  # Rubin's registry id of alert schema 11.1 (major * 100 + minor)


@cache
def rubin_schema():
    from importlib.resources import files

    from hyrax.stream.alerts import _load_schema

    return _load_schema(files("lsst.alert.packet") / "schema" / "11" / "1" / "lsst.v11_1.alert.avsc")


@cache
def _template() -> dict:
    from importlib.resources import files

    text = (files("lsst.alert.packet") / "schema" / "11" / "1" / "sample_data" / "alert.json").read_text()
    return json.loads(text)


@cache
def galaxies() -> np.ndarray:
    from hyrax.datasets.decals_rings import BUNDLE

    with np.load(BUNDLE) as bundle:  # as DecalsRingsDataset reads them, so the two give the same vectors
        return np.asarray(bundle["images"], dtype=np.float32) / 255.0


def fits_bytes(pixels: np.ndarray) -> bytes:
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(pixels.astype(np.float32))]).writeto(buffer)
    return buffer.getvalue()


def alert_record(number: int, size: int = 64) -> dict:
    """Alert ``number``: ids 7_000_000 + number (alert) and 9_000 + number // 2 (object: two alerts each)."""
    record = dict(_template())
    record["diaSourceId"] = 7_000_000 + number
    record["diaSource"] = {
        **record["diaSource"],
        "diaSourceId": 7_000_000 + number,
        "diaObjectId": 9_000 + number // 2,
        "ra": 150.0 + number * 1e-4,
    }
    record["diaObject"] = {**record["diaObject"], "diaObjectId": 9_000 + number // 2}
    record["prvDiaSources"] = None
    image = galaxies()[number % len(galaxies())][:, :size, :size]
    for plane, name in enumerate(("cutoutScience", "cutoutTemplate", "cutoutDifference")):
        record[name] = fits_bytes(image[plane])
    return record


def rubin_packet(number: int, size: int = 64) -> bytes:
    """The Confluent wire format: a zero byte, the schema id (4 bytes), the schemaless Avro record."""
    import fastavro

    buffer = io.BytesIO()
    buffer.write(b"\x00" + struct.pack(">I", SCHEMA_ID))
    fastavro.schemaless_writer(buffer, rubin_schema(), alert_record(number, size))
    return buffer.getvalue()


#: ZTF's alert layout (the field names and nesting of its published schema, reduced to what the tests
#: read): candid, objectId, a candidate record, and each stamp a {fileName, stampData} record holding
#: gzipped FITS.
ZTF_LIKE_SCHEMA = {
    "type": "record",
    "name": "alert",
    "namespace": "ztf",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {
            "name": "candidate",
            "type": {
                "type": "record",
                "name": "candidate",
                "fields": [
                    {"name": "jd", "type": "double"},
                    {"name": "fid", "type": "int"},
                    {"name": "ra", "type": "double"},
                    {"name": "dec", "type": "double"},
                    {"name": "magpsf", "type": "float"},
                ],
            },
        },
        *(
            {
                "name": name,
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": name,
                        "fields": [
                            {"name": "fileName", "type": "string"},
                            {"name": "stampData", "type": "bytes"},
                        ],
                    },
                ],
                "default": None,
            }
            for name in ("cutoutScience", "cutoutTemplate", "cutoutDifference")
        ),
    ],
}


def container_packet(number: int) -> bytes:
    """One ZTF-style alert as an Avro object container file carrying its schema, stamps gzipped FITS."""
    import gzip

    import fastavro

    image = expected_image(number)
    record = {
        "schemavsn": "3.3",
        "objectId": f"ZTF21aa{number:05d}",
        "candid": 1_500_000_000_000 + number,
        "candidate": {"jd": 2459000.5 + number, "fid": 1, "ra": 150.0, "dec": 2.0, "magpsf": 18.5},
    }
    for plane, name in enumerate(("cutoutScience", "cutoutTemplate", "cutoutDifference")):
        record[name] = {"fileName": f"{name}.fits.gz", "stampData": gzip.compress(fits_bytes(image[plane]))}
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(ZTF_LIKE_SCHEMA), [record])
    return buffer.getvalue()


def expected_image(number: int) -> np.ndarray:
    return galaxies()[number % len(galaxies())]

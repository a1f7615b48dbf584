"""The download catalog (src/hyrax/download/catalog.py): formats, column names, ids, slices and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax.download.catalog import NO_TRACT, read_download_catalog
from hyrax.errors import DataError
from tests.download.conftest import make_catalog


@pytest.mark.parametrize("name", ["catalog.parquet", "catalog.csv", "catalog.fits"])
def test_every_format_reads_the_same(catalog, name):
    path, table = catalog(5, name=name)
    read = read_download_catalog(path)
    assert read.object_ids.to_pylist() == table.object_id.tolist()
    assert np.allclose(read.ra, table.ra) and np.allclose(read.dec, table.dec)
    assert (read.tract == 9813).all()


def test_integer_ids_keep_all_17_digits(catalog):
    table = make_catalog(3)
    table["object_id"] = table.object_id.astype(np.int64)
    for name in ("ints.parquet", "ints.csv", "ints.fits"):
        path, _ = catalog(name=name, table=table)
        assert read_download_catalog(path).object_ids.to_pylist() == table.object_id.astype(str).tolist()


def test_hsc_export_column_names_are_recognised(catalog):
    table = make_catalog(2).rename(columns={"object_id": "# object_id", "ra": "RA", "dec": "Dec"})
    path, _ = catalog(name="export.csv", table=table)
    assert len(read_download_catalog(path)) == 2


def test_offset_and_num_sources_slice(catalog):
    path, table = catalog(10)
    read = read_download_catalog(path, offset=3, num_sources=4)
    assert read.object_ids.to_pylist() == table.object_id[3:7].tolist()


def test_missing_or_negative_tract_is_left_to_the_service(catalog):
    table = make_catalog(3)
    table["tract"] = [9813.0, np.nan, -1]
    path, _ = catalog(table=table)
    assert read_download_catalog(path).tract.tolist() == [9813, NO_TRACT, NO_TRACT]


def test_bad_rows_are_problems_not_errors(catalog):
    table = make_catalog(5)
    table.loc[0, "ra"] = 360.0
    table.loc[1, "dec"] = np.nan
    table.loc[2, "object_id"] = "12_34"
    table.loc[3, "ra"] = -0.1
    path, _ = catalog(table=table)
    assert read_download_catalog(path).problems() == {
        0: "ra = 360.0 is outside [0, 360)",
        1: "dec = nan is outside [-90, 90]",
        2: "object_id '12_34' contains '_', '/' or a space, which cutout file names cannot hold",
        3: "ra = -0.1 is outside [0, 360)",
    }


def test_missing_columns_are_named_with_those_present(catalog):
    path, _ = catalog(table=pd.DataFrame({"id": ["1"], "ra": [1.0], "decl": [2.0]}))
    with pytest.raises(DataError) as error:
        read_download_catalog(path)
    message = str(error.value)
    assert "has no column 'object_id', 'dec'" in message and "It has: id, ra, decl" in message


def test_repeated_ids_are_an_error_naming_them(catalog):
    table = make_catalog(4)
    table.loc[3, "object_id"] = table.object_id[1]
    path, _ = catalog(table=table)
    with pytest.raises(DataError, match=f"more than once \\({table.object_id[1]}\\)"):
        read_download_catalog(path)


def test_floating_point_ids_are_refused(catalog):
    path, _ = catalog(table=pd.DataFrame({"object_id": [1.5e16], "ra": [1.0], "dec": [2.0]}))
    with pytest.raises(DataError, match="floating point numbers"):
        read_download_catalog(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="download.fits_file = '.*nope.fits' does not exist"):
        read_download_catalog(tmp_path / "nope.fits")
    (tmp_path / "catalog.xlsx").write_text("x")
    with pytest.raises(DataError, match="is not a FITS"):
        read_download_catalog(tmp_path / "catalog.xlsx")

"""Reading catalogs (FITS, Parquet, CSV, or anything astropy reads) into pandas, and finding columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hyrax.errors import DataError
from hyrax.plugins import did_you_mean

CATALOG_NAMES = ("catalog.parquet", "catalog.pq", "catalog.fits", "catalog.csv", "catalog.ecsv")


def read_table(path: str | Path):
    """A catalog as a pandas DataFrame. Parquet and CSV go through pandas; the rest through astropy."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"Catalog '{path}' does not exist. Check data_location / data_set.filter_catalog.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        from astropy.table import Table

        table = Table.read(path)
        table.convert_bytestring_to_unicode()  # FITS strings arrive as bytes
        names = [name for name in table.colnames if len(table[name].shape) <= 1]
        return table[names].to_pandas()
    except DataError:
        raise
    except Exception as error:  # every reader has its own errors; all mean "cannot read this catalog"
        raise DataError(f"Cannot read catalog '{path}': {type(error).__name__}: {error}.") from error


def find_catalog(directory: Path) -> Path | None:
    for name in CATALOG_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def require_columns(table, wanted: Sequence[tuple[str, str]], source: str) -> None:
    """``wanted`` is (column, config key that renames it); a missing one is an error naming both."""
    columns = [str(c) for c in table.columns]
    for column, key in wanted:
        if column not in columns:
            raise DataError(
                f"Catalog {source} has no column '{column}'.{did_you_mean(column, columns)} Its columns: "
                f"{', '.join(columns[:30])}{' ...' if len(columns) > 30 else ''}. Set {key} to the right name."
            )

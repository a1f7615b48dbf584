"""The results table's schema metadata is what the published readers take: Hyrax 0.13's (``<column>`` ->
``{"tensor_shape", "tensor_dtype"}`` for every value column) and, for a table of ``data`` alone, the
top-level ``tensor_shape``/``tensor_dtype`` of the published writer before 0.13; runs written before
with ``shape``/``dtype`` still open and resume. The same through the published h.infer():
tests/results/test_inference.py (test_infer_writes_every_object_in_dataset_order)."""

from __future__ import annotations

import json

import lance
import numpy as np
import pyarrow as pa

from hyrax.results.store import ResultDataset, ResultWriter, table_path


def published_layout(schema) -> dict[str, tuple[list[int], np.dtype]]:
    """What Hyrax 0.13's ResultDataset takes from the metadata: the top-level ``tensor_shape`` and
    ``tensor_dtype`` as ``data``'s when both are there, else every key as a column whose value is JSON
    with ``tensor_shape`` and ``tensor_dtype``."""
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if "tensor_shape" in metadata and "tensor_dtype" in metadata:
        return {"data": (json.loads(metadata["tensor_shape"]), np.dtype(metadata["tensor_dtype"]))}
    described = {key: json.loads(value) for key, value in metadata.items()}
    return {key: (d["tensor_shape"], np.dtype(d["tensor_dtype"])) for key, d in described.items()}


def per_column(schema) -> dict[str, tuple[list[int], np.dtype]]:
    """0.13's own layout (what its writer writes): each value column's key."""
    metadata = schema.metadata or {}
    described = {f.name: json.loads(metadata[f.name.encode()]) for f in schema if f.name != "object_id"}
    return {key: (d["tensor_shape"], np.dtype(d["tensor_dtype"])) for key, d in described.items()}


def test_every_column_described_and_table_datasets_read_the_shape(tmp_path):
    """One vector (also at the top, for the published readers before 0.13) or a dict of columns, each
    with 0.13's description; a TableDataset of an exported copy reads the shapes too."""
    from hyrax.datasets.table import _shapes

    with ResultWriter(tmp_path / "one", (2, 3), "float32") as writer:
        writer.write(np.array(["a", "b"]), np.ones((2, 2, 3), np.float32))
    schema = lance.dataset(str(table_path(tmp_path / "one"))).schema
    assert published_layout(schema) == per_column(schema) == {"data": ([2, 3], np.dtype("float32"))}
    assert set(schema.metadata) == {b"data", b"tensor_shape", b"tensor_dtype"}
    assert _shapes(schema) == {"data": (2, 3)}
    shapes, dtypes = {"data": (4,), "logits": (2, 2)}, {"data": "float32", "logits": "float64"}
    with ResultWriter(tmp_path / "two", shapes, dtypes) as writer:
        writer.write(np.array(["a"]), {"data": np.ones((1, 4)), "logits": np.ones((1, 2, 2))})
    schema = lance.dataset(str(table_path(tmp_path / "two"))).schema
    expected = {"data": ([4], np.dtype("float32")), "logits": ([2, 2], np.dtype("float64"))}
    assert published_layout(schema) == per_column(schema) == expected and len(schema.metadata) == 2


def test_a_run_written_with_shape_and_dtype_opens_and_resumes(tmp_path):
    """A table as this Hyrax wrote it before (top-level ``shape``, ``dtype``, ``hyrax_version``): read with
    its shape, and a resumed run appends to it."""
    values = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 6)
    old = pa.table({"object_id": ["a", "b"], "data": values}).replace_schema_metadata(
        {"shape": "[2, 3]", "dtype": "float32", "hyrax_version": "0.1"}
    )
    lance.write_dataset(old, str(table_path(tmp_path)))
    results = ResultDataset(data_location=tmp_path)
    assert results.shape == (2, 3) and results.lookup("b").tolist() == [[6, 7, 8], [9, 10, 11]]
    with ResultWriter(tmp_path, (2, 3), "float32", resume=True) as writer:
        writer.write(np.array(["c"]), np.full((1, 2, 3), 5, np.float32))
    results = ResultDataset(data_location=tmp_path)
    assert results.ids().tolist() == ["a", "b", "c"] and results[2].shape == (2, 3)
    assert results.lookup("a").tolist() == [[0, 1, 2], [3, 4, 5]]

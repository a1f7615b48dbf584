"""Results tables are compacted when closed: few fragments of bounded size, rows in their order."""

from __future__ import annotations

import lance
import numpy as np

from hyrax.results import store
from hyrax.results.store import ResultDataset, ResultWriter


def test_closing_compacts_into_bounded_fragments_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_ROWS", 1024)
    monkeypatch.setattr(store, "COMPACT_ROWS", 8192)
    ids = np.char.add("obj", np.arange(60_000).astype(str))
    data = np.arange(60_000 * 4, dtype=np.float32).reshape(60_000, 4)
    with ResultWriter(tmp_path, (4,), "float32") as writer:
        for start in range(0, 60_000, 1000):
            writer.write(ids[start : start + 1000], data[start : start + 1000])
    table = lance.dataset(str(store.table_path(tmp_path)))
    sizes = [fragment.count_rows() for fragment in table.get_fragments()]
    assert len(sizes) <= 8 and max(sizes) <= 2 * 8192 and sum(sizes) == 60_000
    results = ResultDataset(data_location=tmp_path)
    assert results.ids().tolist() == ids.tolist() and np.array_equal(results[np.arange(60_000)], data)
    assert results.rows_of(["obj59999", "obj0", "nope"]).tolist() == [59_999, 0, -1]
    assert len(table.versions()) == 1 or all(v["version"] >= table.version - 1 for v in table.versions())

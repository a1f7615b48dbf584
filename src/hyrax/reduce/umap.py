"""``umap``: UMAP (umap-learn) fitted on a sample; every row placed by its nearest fitted neighbours.

Keyword arguments of ``umap.UMAP`` come from ``[reduce_dimensions.umap.kwargs]``.
"""

from __future__ import annotations

import numpy as np

from hyrax.reduce.base import Reducer, SamplePlacement


class UMAPReducer(Reducer):
    name = "umap"

    def _fit(self, vectors: np.ndarray) -> None:
        from hyrax.plugins import optional_import

        umap = optional_import("umap", "umap", "reduce_dimensions with UMAP")

        kwargs = {"n_components": self.n_components, "random_state": self.seed, **self.kwargs}
        embedding = umap.UMAP(**kwargs).fit_transform(vectors)
        self.arrays = {"sample": vectors, "embedding": embedding.astype(np.float32)}
        self._restore()

    def _restore(self) -> None:
        self.placement = SamplePlacement(self.arrays["sample"], self.arrays["embedding"])

    def _transform(self, vectors: np.ndarray) -> np.ndarray:
        return self.placement.place(vectors)

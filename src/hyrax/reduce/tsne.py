"""``tsne``: t-SNE (openTSNE) fitted on a sample; every row placed into that one embedding by its
nearest fitted neighbours, never by independent fits per batch.

Keyword arguments of ``openTSNE.TSNE`` come from ``[reduce_dimensions.tsne.kwargs]``.
"""

from __future__ import annotations

import numpy as np

from hyrax.reduce.base import Reducer, SamplePlacement


class TSNEReducer(Reducer):
    name = "tsne"

    def _fit(self, vectors: np.ndarray) -> None:
        from hyrax.plugins import optional_import

        TSNE = optional_import("openTSNE", "tsne", "reduce_dimensions with t-SNE").TSNE

        kwargs = {"n_components": self.n_components, "random_state": self.seed, "n_jobs": 2, **self.kwargs}
        perplexity = min(float(kwargs.get("perplexity", 30)), max(2.0, (len(vectors) - 1) / 3))
        kwargs["perplexity"] = perplexity
        embedding = np.asarray(TSNE(**kwargs).fit(vectors))
        self.arrays = {"sample": vectors, "embedding": embedding.astype(np.float32)}
        self._restore()

    def _restore(self) -> None:
        self.placement = SamplePlacement(self.arrays["sample"], self.arrays["embedding"])

    def _transform(self, vectors: np.ndarray) -> np.ndarray:
        return self.placement.place(vectors)

"""``pca``: principal components (scikit-learn's full solver), saved as plain arrays (mean, components)."""

from __future__ import annotations

import numpy as np

from hyrax.reduce.base import Reducer


class PCAReducer(Reducer):
    name = "pca"

    def _fit(self, vectors: np.ndarray) -> None:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=self.n_components, random_state=self.seed, **self.kwargs).fit(vectors)
        self.arrays = {"mean": pca.mean_.astype(np.float32), "components": pca.components_.astype(np.float32)}

    def _transform(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors - self.arrays["mean"]) @ self.arrays["components"].T

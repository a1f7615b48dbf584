"""Dimensionality reduction: umap, pca and tsne behind one fit / transform / save / load protocol."""

from __future__ import annotations

from hyrax.plugins import Registry

REDUCERS = Registry(
    "dimensionality reduction",
    "Write your own as a class with fit, transform, save and load (see hyrax.reduce.base.Reducer) and give its "
    "import path as reduce_dimensions.name.",
)
for _name, _path in {
    "pca": "hyrax.reduce.pca:PCAReducer",
    "umap": "hyrax.reduce.umap:UMAPReducer",
    "tsne": "hyrax.reduce.tsne:TSNEReducer",
}.items():
    REDUCERS.register(_name, lazy=_path)

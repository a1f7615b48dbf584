"""Vector indexes over inference results: one protocol, one file per backend (lance, chromadb, qdrant)."""

from __future__ import annotations

from hyrax.plugins import Registry

VECTOR_DBS = Registry("vector database", "Set vector_db.name to lance, chromadb or qdrant.")
for _name, _path in {
    "lance": "hyrax.vector_db.lance_index:LanceIndex",
    "chromadb": "hyrax.vector_db.chroma_index:ChromaIndex",
    "qdrant": "hyrax.vector_db.qdrant_index:QdrantIndex",
}.items():
    VECTOR_DBS.register(_name, lazy=_path)

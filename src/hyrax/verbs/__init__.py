"""The verbs: one file each, registered here lazily so that ``hyrax --help`` imports none of them.

Add a verb: write ``verbs/<name>.py`` with a :class:`~hyrax.verbs.verb.Verb` subclass and add one line
to ``BUILTIN_VERBS``. ``h.<name>()`` and ``hyrax <name>`` then exist.
"""

from __future__ import annotations

from hyrax.plugins import VERBS

#: name -> (import path, one-line summary shown by `hyrax --help`)
BUILTIN_VERBS: dict[str, tuple[str, str]] = {
    "config": (
        "hyrax.verbs.config_verb:ConfigVerb",
        "Print the resolved configuration, or the documentation of a section or key.",
    ),
    "download": (
        "hyrax.verbs.download:DownloadVerb",
        "Download HSC cutouts of the objects in download.fits_file into general.data_dir (resumable).",
    ),
    "rebuild_manifest": (
        "hyrax.verbs.rebuild_manifest:RebuildManifestVerb",
        "Rebuild general.data_dir's download manifest from the cutout files on disk.",
    ),
    "prepare": (
        "hyrax.verbs.prepare:PrepareVerb",
        "Load the datasets of every [data_request] group and summarize their fields and sizes.",
    ),
    "create_splits": (
        "hyrax.verbs.create_splits:CreateSplitsVerb",
        "Divide objects among the data_request groups ([split]) and save the split for reuse.",
    ),
    "infer_stream": (
        "hyrax.verbs.infer_stream:InferStreamVerb",
        "Run the trained model on a stream (Kafka alerts or any stream dataset), each result written once (resumable).",
    ),
    "train_stream": (
        "hyrax.verbs.train_stream:TrainStreamVerb",
        "Train the model on a stream ([data_request.train_stream]), no epochs; weights saved as it goes (resumable).",
    ),
    "label": (
        "hyrax.verbs.discovery:LabelVerb",
        "Label objects (1 interesting, 0 not, a tag) or import the map's labels CSV; kept by object id.",
    ),
    "labels": (
        "hyrax.verbs.discovery:LabelsVerb",
        "List the labels given so far (the latest per object; --history: every one).",
    ),
    "rank": (
        "hyrax.verbs.discovery:RankVerb",
        "Rank every object by relevance learnt from the labels x outlier score; list the top.",
    ),
    "suggest": (
        "hyrax.verbs.discovery:SuggestVerb",
        "List the unlabelled objects whose labels would teach the ranking the most.",
    ),
    "model": (
        "hyrax.verbs.model_verb:ModelVerb",
        "Show the model class that model.name names and its [model.<Name>] settings (--list: all models).",
    ),
    "train": (
        "hyrax.verbs.train:TrainVerb",
        "Train the model (model.name) on the train group; checkpoints, metrics and weights go in a run directory.",
    ),
    "infer": (
        "hyrax.verbs.infer:InferVerb",
        "Run the trained model over the infer group; write object_id + vector rows (Lance) in a run directory.",
    ),
    "test": (
        "hyrax.verbs.test_verb:TestVerb",
        "Evaluate the trained model on the test group: outputs (Lance) and test_batch metrics in a run directory.",
    ),
    "lookup": (
        "hyrax.verbs.lookup:LookupVerb",
        "Print the result vector of an object id (--id ID) from the latest infer run (or --input-dir RUN_DIR).",
    ),
    "to_onnx": (
        "hyrax.verbs.to_onnx:ToOnnxVerb",
        "Export the latest trained model (or onnx.input_model_directory) to ONNX, checked against torch.",
    ),
    "engine": (
        "hyrax.verbs.engine:EngineVerb",
        "Run the latest ONNX export (or engine.model_directory) over the infer group with onnxruntime.",
    ),
    "reduce_dimensions": (
        "hyrax.verbs.reduce_dimensions:ReduceDimensionsVerb",
        "Map the latest inference results to 2-D/3-D (reduce_dimensions.name: umap, pca, tsne).",
    ),
    "save_to_database": (
        "hyrax.verbs.vector_db_verbs:SaveToDatabaseVerb",
        "Index the latest inference results for similarity search (vector_db.name: lance, chromadb, qdrant).",
    ),
    "database_connection": (
        "hyrax.verbs.vector_db_verbs:DatabaseConnectionVerb",
        "Search the vector index: nearest neighbours of an object id (--id ID -k 10).",
    ),
    "outliers": (
        "hyrax.verbs.vector_db_verbs:OutliersVerb",
        "Score every object's unusualness (k-th neighbour distance) and list the most unusual with metadata.",
    ),
    "visualize": (
        "hyrax.verbs.visualize:VisualizeVerb",
        "Show the latest reduce_dimensions map with thumbnails; serve it on 127.0.0.1 or write --html FILE.",
    ),
    "atlas": (
        "hyrax.verbs.atlas:AtlasVerb",
        "Tile the latest reduce_dimensions map with its objects' images: a zoomable pyramid in <run>/atlas (resumable).",
    ),
    "demo": (
        "hyrax.verbs.demo:DemoVerb",
        "Run the whole pipeline on the bundled galaxies: train, infer, map, index, outliers, standalone page.",
    ),
    "visualize_v2": (
        "hyrax.verbs.visualize:VisualizeV2Verb",
        "The published Hyrax's second visualizer: here the same map as visualize.",
    ),
    "umap": (
        "hyrax.verbs.reduce_dimensions:UmapVerb",
        "Deprecated: use reduce_dimensions (this runs it with algorithm umap).",
    ),
}

#: Verbs that exist only on the command line (no h.<verb>() method): the notebook has other means.
CLI_ONLY = frozenset({"config"})

for _name, (_path, _summary) in BUILTIN_VERBS.items():
    VERBS.register(_name, lazy=_path, summary=_summary)

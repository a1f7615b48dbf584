"""Smallest reproductions of the incompatibilities found by the notebook and test runs.

    python probes.py [--only NAME ...]      # with the python of the environment under test

Each probe runs in a fresh interpreter (in a temporary directory) and prints one line: SAME (behaves as
upstream Hyrax does), DIFF (runs, but not as upstream) or ERROR (raises), with the observed value or the
error's first line. Upstream's behaviour is quoted from its source/docs at the commit named in
the compatibility issue. Some probes need UPSTREAM (a checkout of lincc-frameworks/hyrax) in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

PROBES: dict[str, tuple[str, str]] = {}


def probe(name: str, upstream: str):
    def wrap(code: str):
        PROBES[name] = (upstream, textwrap.dedent(code))
        return code

    return wrap


probe("results_table_written_by_upstream", "lookup returns the 3-vector [3. 4. 5.]")("""
    import lance, numpy as np, pyarrow as pa
    from hyrax import Hyrax
    vals = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    t = pa.table({"object_id": ["a", "b"], "data": vals}).replace_schema_metadata(
        {"tensor_shape": "[3]", "tensor_dtype": "float32"})   # upstream's ResultDatasetWriter metadata keys
    lance.write_dataset(t, "run/lance_db/results.lance")
    got = Hyrax(setup_logging=False).lookup(id="b", results_dir="run")
    print(("SAME" if np.shape(got) == (3,) else "DIFF"), repr(got))
""")

probe(
    "dataset_config_nested_partial", "data_set.HyraxRandomDataset is deep-merged: image shape (2, 16, 16)"
)("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("data_request", {"train": {"data": {
        "dataset_class": "HyraxRandomDataset", "data_location": "x", "primary_id_field": "object_id",
        "dataset_config": {"HyraxRandomDataset": {"shape": [2, 16, 16]}}}}})
    print("SAME", h.prepare()["train"][0]["data"]["image"].shape)
""")

probe("dataset_config_root_key", "non-dataset keys merge into the config root: len 32")("""
    import numpy as np
    from hyrax import Hyrax
    from hyrax.datasets import HyraxDataset
    class Survey(HyraxDataset):                     # docs/pre_executed/external_dataset_class.ipynb
        def __init__(self, config, data_location=None):
            self.n = config.get("n_objects", 64)
            super().__init__(config)
        def __len__(self): return self.n
        def get_image(self, idx): return np.zeros(3, np.float32)
        def get_object_id(self, idx): return str(idx)
    h = Hyrax(setup_logging=False)
    h.set_config("data_request", {"train": {"data": {"dataset_class": "Survey", "data_location": "x",
        "primary_id_field": "object_id", "dataset_config": {"n_objects": 32}}}})
    n = len(h.prepare()["train"])
    print("SAME" if n == 32 else "DIFF", "len =", n)
""")

probe("field_collate_samples_dicts", "collate_<field>(samples: list[dict]) -> dict, extra keys kept")("""
    import numpy as np
    from hyrax import Hyrax
    from hyrax.datasets import HyraxDataset
    class Curves(HyraxDataset):                     # docs/pre_executed/external_dataset_class.ipynb
        def __init__(self, config, data_location=None): super().__init__(config)
        def __len__(self): return 4
        def get_light_curve(self, idx): return np.ones(idx + 1, np.float32)
        def get_object_id(self, idx): return str(idx)
        def collate_light_curve(self, samples):
            curves = [s["light_curve"] for s in samples]
            out = np.zeros((len(curves), 8), np.float32); mask = np.zeros_like(out)
            for i, c in enumerate(curves): out[i, :len(c)] = c; mask[i, :len(c)] = 1
            return {"light_curve": out, "light_curve_mask": mask}
    h = Hyrax(setup_logging=False)
    h.set_config("data_request", {"train": {"data": {"dataset_class": "Curves", "data_location": "x",
        "primary_id_field": "object_id", "fields": ["light_curve", "object_id"]}}})
    p = h.prepare()["train"]
    batch = p.collate([p[i] for i in range(4)])
    print("SAME", sorted(batch["data"]))
""")

probe("hand_replaced_split_table", "h.train() runs")("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.config["general"]["results_dir"] = "results"
    h.config["model"]["name"] = "HyraxLoopback"
    h.config["train"]["epochs"] = 1
    h.config["data_request"] = {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                              "primary_id_field": "object_id"}} for g in ("train", "validate")}
    h.config["split"] = {"train": 0.6, "validate": 0.4}   # upstream tests/notebooks replace the table
    h.train()
    print("SAME trained")
""")

probe(
    "config_version_current_upstream",
    "a config stamped config_version = 7 (every upstream runtime_config.toml) loads",
)("""
    open("cfg.toml", "w").write("config_version = 7\\n[train]\\nepochs = 3\\n")
    from hyrax import Hyrax
    print("SAME", Hyrax(config_file="cfg.toml", setup_logging=False).config["train"]["epochs"])
""")

probe("config_version_1_model_inputs", "upstream v1 file: [model_inputs] migrated to [data_request]")("""
    open("cfg.toml", "w").write('config_version = 1\\n[model_inputs.train.data]\\ndataset_class = "HyraxRandomDataset"\\n')
    from hyrax import Hyrax
    print("SAME", Hyrax(config_file="cfg.toml", setup_logging=False).config["data_request"]["train"]["data"]["dataset_class"])
""")

probe(
    "current_upstream_key_names",
    "upstream's current [reduce_dimensions] keys load (algorithm, umap.model_path, tsne perplexity 30.0)",
)("""
    open("cfg.toml", "w").write('[reduce_dimensions]\\nalgorithm = "pca"\\n[reduce_dimensions.umap]\\nmodel_path = false\\n'
                                '[reduce_dimensions.tsne.kwargs]\\nperplexity = 30.0\\n')
    from hyrax import Hyrax
    Hyrax(config_file="cfg.toml", setup_logging=False)
    print("SAME loaded")
""")

probe("set_config_over_write", "set_config(key, value, over_write=True) replaces the table")("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("data_request", {"infer": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "x",
                                                     "primary_id_field": "object_id"}}}, over_write=True)
    print("SAME", list(h.config["data_request"]))
""")

probe(
    "final_validation_metrics_loss",
    "model.final_validation_metrics['loss'] (docs/pre_executed/hyperparameter_tuning_examples)",
)("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "validate")})
    h.set_config("split", {"train": 0.8, "validate": 0.2})
    m = h.train()
    print("SAME" if "loss" in m.final_validation_metrics else "DIFF", dict(m.final_validation_metrics))
""")

probe(
    "verb_keyword_arguments",
    "reduce_dimensions(algorithm=), train(trace=), save_to_database(output_dir=), database_connection(database_dir=)",
)("""
    import inspect
    from hyrax import Hyrax
    from hyrax.plugins import VERBS
    want = {"reduce_dimensions": "algorithm", "umap": "model_path", "train": "trace", "infer": "trace",
            "save_to_database": "output_dir", "database_connection": "database_dir", "visualize": "width"}
    missing = [f"{v}({a}=)" for v, a in want.items() if a not in inspect.signature(VERBS.get(v).run).parameters]
    print("DIFF missing:" if missing else "SAME", ", ".join(missing))
""")

probe("upstream_verbs", "h.test(), h.infer_stream(), h.visualize_v2(), h.raw_data_dimensions() exist")("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    missing = [v for v in ("test", "infer_stream", "visualize_v2", "raw_data_dimensions") if not hasattr(h, v)]
    print("DIFF missing:" if missing else "SAME", ", ".join(missing))
""")

probe(
    "result_dataset_table",
    "ResultDataset.table is the lancedb table (working_with_results_data, unsupervised_*)",
)("""
    import numpy as np
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "infer")})
    h.train(); r = h.infer()
    print("SAME" if hasattr(r, "table") else "DIFF no .table;", type(r).__name__)
""")

probe(
    "database_connection_api", "conn.get_by_id([...]) -> {id: vector}; search_by_id(id, k) -> {id: [ids]}"
)("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "infer")})
    h.train(); r = h.infer(); h.save_to_database(); conn = h.database_connection()
    first = str(r.ids()[0])
    out = conn.search_by_id(first, k=3)
    print("SAME" if isinstance(out, dict) and hasattr(conn, "get_by_id") else "DIFF",
          "get_by_id:", hasattr(conn, "get_by_id"), "| search_by_id returns", type(out).__name__)
""")

probe("cifar_ids_and_scale", "CIFAR test ids '00000'..'09999'; image normalized to [-1, 1]")("""
    import sys; sys.path.insert(0, os.environ["COMPAT_HARNESS"])
    import fake_data; fake_data.cifar("data", per_batch=10, n_test=20)
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("data_request", {"infer": {"data": {"dataset_class": "HyraxCifarDataset", "data_location": "data",
        "primary_id_field": "object_id", "dataset_config": {"HyraxCifarDataset": {"use_training_data": False}}}}})
    p = h.prepare()["infer"]; img = p[0]["data"]["image"]
    ok = str(p.ids()[0]) == "00" and img.min() < 0
    print("SAME" if ok else "DIFF", "first id", repr(str(p.ids()[0])), "| image range", float(img.min()), float(img.max()))
""")

probe(
    "hsc_filter_catalog_upstream_manifest",
    "data_set.filter_catalog = <upstream manifest.fits> accepted by HSCDataset",
)("""
    import sys; sys.path.insert(0, os.environ["COMPAT_HARNESS"])
    import fake_data; fake_data.hsc("hsc", n=4, size=16)
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("data_set.filter_catalog", "hsc/manifest.fits")
    h.set_config("data_request", {"infer": {"data": {"dataset_class": "HSCDataset", "data_location": "hsc",
                                                     "primary_id_field": "object_id"}}})
    print("SAME", len(h.prepare()["infer"]))
""")

probe("model_without_prepare_inputs", "optional upstream: default prepare_inputs -> (image, label)")("""
    import torch.nn as nn
    from hyrax import Hyrax, hyrax_model
    @hyrax_model
    class M(nn.Module):
        def __init__(self, config, data_sample=None):
            super().__init__(); self.lin = nn.Linear(50, 2)
        def forward(self, x): return self.lin(x.flatten(1))
        def train_batch(self, batch):
            image, _ = batch; self.optimizer.zero_grad(); loss = self(image).pow(2).mean()
            loss.backward(); self.optimizer.step(); return {"loss": loss.item()}
        def infer_batch(self, batch): return self(batch[0])
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "M"); h.set_config("train.epochs", 1)
    h.set_config("data_request", {"train": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                      "primary_id_field": "object_id"}}})
    h.train(); print("SAME trained")
""")

probe(
    "loopback_placeholder_weights",
    "HyraxLoopback infers with an empty placeholder weights file (foo.bar in infer_stream_example)",
)("""
    from hyrax import Hyrax
    open("fakeweights", "w").close()
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("infer.model_weights_file", "fakeweights")
    h.set_config("data_request", {"infer": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                      "primary_id_field": "object_id"}}})
    print("SAME", len(h.infer()))
""")

probe(
    "missing_dataset_classes",
    "HyraxHATSDataset, LanceDBDataset, NestedPandasDataset, MultimodalUniverseDataset, KafkaStreamDataset, LSSTDataset, DownloadedLSSTDataset registered",
)("""
    from hyrax import Hyrax
    names = set(Hyrax(setup_logging=False).list_dataset_classes())
    want = ["HyraxHATSDataset", "LanceDBDataset", "NestedPandasDataset", "MultimodalUniverseDataset",
            "KafkaStreamDataset", "LSSTDataset", "DownloadedLSSTDataset"]
    missing = [w for w in want if w not in names]
    print("DIFF missing:" if missing else "SAME", ", ".join(missing))
""")

probe(
    "upstream_import_paths",
    "hyrax.config_utils.find_most_recent_results_dir, hyrax.models.model_registry.hyrax_model, hyrax.datasets.random.hyrax_random_dataset.HyraxRandomDataset",
)("""
    import importlib
    bad = []
    for mod, name in (("hyrax.config_utils", "find_most_recent_results_dir"), ("hyrax.models.model_registry", "hyrax_model"),
                      ("hyrax.datasets.random.hyrax_random_dataset", "HyraxRandomDataset"),
                      ("hyrax.datasets.dataset_registry", "HyraxDataset")):
        try: getattr(importlib.import_module(mod), name)
        except Exception as e: bad.append(f"{mod}.{name}")
    print("DIFF missing:" if bad else "SAME", ", ".join(bad))
""")

probe(
    "reduce_run_dir_names",
    "reduce runs named <stamp>-umap|pca|tsne-<x> (find_most_recent_results_dir(config, 'umap'))",
)("""
    import os
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1); h.set_config("reduce_dimensions.name", "pca")
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "infer")})
    h.train(); h.infer(); h.reduce_dimensions()
    names = sorted(n.split("-")[2] for n in os.listdir("results") if n[:2] == "20")
    print("SAME" if "pca" in names else "DIFF", names)
""")

probe(
    "on_epoch_start_verb_for_validation",
    "validation datasets get on_epoch_start('train') during training; infer calls on_epoch_start('infer')",
)("""
    from hyrax import Hyrax
    from hyrax.datasets.random import HyraxRandomDataset
    seen = []
    class Counting(HyraxRandomDataset):
        def on_epoch_start(self, verb): seen.append(verb)
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_request", {g: {"data": {"dataset_class": "Counting", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "validate")})
    h.set_config("split", {"train": 0.8, "validate": 0.2})
    h.train()
    during_training = sorted(set(seen))
    seen.clear()
    h.set_config("data_request", {"infer": {"data": {"dataset_class": "Counting", "data_location": "d",
                                                      "primary_id_field": "object_id"}}})
    h.infer()
    ok = during_training == ["train"] and seen == ["infer"]
    print("SAME" if ok else "DIFF", "during train:", during_training, "| during infer:", seen)
""")

probe(
    "distributed_in_notebook", "general.distributed = true in a notebook trains (on the GPUs there are)"
)("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("general.distributed", True)
    h.set_config("model.name", "HyraxLoopback"); h.set_config("train.epochs", 1)
    h.set_config("data_request", {"train": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                      "primary_id_field": "object_id"}}})
    h.train(); print("SAME trained")
""")


probe(
    "onnx_engine_identity",
    "train HyraxLoopback, h.to_onnx(), h.engine(): engine results == input images, same ids (tests/hyrax/test_engine.py)",
)("""
    import numpy as np
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1); h.set_config("data_set.HyraxRandomDataset.size", 20)
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 3])
    h.set_config("data_set.HyraxRandomDataset.provided_labels", [0, 1, 2])  # upstream's default; here false
    h.set_config("data_request", {"train": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                     "fields": ["image", "label"], "primary_id_field": "object_id"}},
                                  "infer": {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                     "fields": ["image"], "primary_id_field": "object_id"}}})
    h.train(); h.to_onnx(); r = h.engine()
    p = h.prepare()["infer"]
    same = np.allclose(np.stack([r[i] for i in range(len(r))]), np.stack([p[i]["data"]["image"] for i in range(len(p))]), atol=1e-5)
    print("SAME" if same and list(map(str, r.ids())) == list(map(str, p.ids())) else "DIFF", "len", len(r))
""")


probe(
    "defaults_vs_upstream",
    "criterion CrossEntropyLoss, optimizer SGD, HyraxRandomDataset provides 'label' (upstream defaults)",
)("""
    from hyrax import Hyrax
    c = Hyrax(setup_logging=False).config
    got = (c["criterion"]["name"], c["optimizer"]["name"], c["scheduler"]["name"],
           c["data_set"]["HyraxRandomDataset"]["provided_labels"], c["data_set"]["HyraxRandomDataset"]["seed"])
    want = ("torch.nn.CrossEntropyLoss", "torch.optim.SGD", "torch.optim.lr_scheduler.ExponentialLR", [0, 1, 2], 42)
    print("SAME" if got == want else "DIFF", got)
""")


probe(
    "scheduler_and_resume",
    "ExponentialLR(gamma=0.5) from lr 128: 16 after 3 epochs; resumed from checkpoint_epoch_3.pt to 5 epochs: 4 (tests/hyrax/test_train.py, via the optimizer)",
)("""
    import glob
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "validate")})
    h.set_config("split", {"train": 0.8, "validate": 0.2})
    h.set_config("scheduler.name", "torch.optim.lr_scheduler.ExponentialLR")
    h.set_config("'torch.optim.lr_scheduler.ExponentialLR'.gamma", 0.5)
    h.set_config("optimizer.name", "torch.optim.SGD"); h.set_config("'torch.optim.SGD'.lr", 128.0)
    h.set_config("train.epochs", 3)
    first = h.train().optimizer.param_groups[0]["lr"]
    h.set_config("train.resume", sorted(glob.glob("results/*-train-*/checkpoint_epoch_3.pt"))[-1])
    h.set_config("train.epochs", 5)
    second = h.train().optimizer.param_groups[0]["lr"]
    print("SAME" if (first, second) == (16.0, 4.0) else "DIFF", "lr after 3 epochs:", first, "| after resume to 5:", second)
""")


probe("upstream_config_files", "every TOML config in the upstream repository loads")("""
    import pathlib, warnings
    from hyrax import Hyrax
    root = pathlib.Path(os.environ["UPSTREAM"])
    report = []
    for path in sorted(root.rglob("*.toml")):
        if path.name == "pyproject.toml":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                Hyrax(config_file=path, setup_logging=False)
                report.append(f"{path.relative_to(root)}: loads")
            except Exception as e:
                report.append(f"{path.relative_to(root)}: {type(e).__name__}: {str(e).splitlines()[0]}")
    bad = [r for r in report if not r.endswith(": loads")]
    print("SAME" if not bad else "DIFF", f"{len(report) - len(bad)}/{len(report)} load;", " | ".join(bad))
""")


probe(
    "set_config_merges_dicts",
    "set_config of a dict merges into the table: {'a': 1, 'b': {'x': 2, 'y': 200}} (config_basics, with dev_mode for the unknown key)",
)("""
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.dev_mode", True)
    h.set_config("base_config", {"a": 1, "b": {"x": 100, "y": 200}})
    h.set_config("base_config", {"b": {"x": 2}})
    got = dict(h.config["base_config"]); got["b"] = dict(got["b"])
    print("SAME" if got == {"a": 1, "b": {"x": 2, "y": 200}} else "DIFF", got)
""")

probe(
    "fits_catalog_formats",
    "FitsImageDataset on upstream's 10 HSC stars, 5 catalog formats: 10 objects, (1, 20, 20), ids in order, ira/idec/SNR fields (tests/hyrax/test_fits_image_dataset.py without metadata_fields())",
)("""
    import pathlib
    from hyrax import Hyrax
    data = pathlib.Path(os.environ["UPSTREAM"]) / "tests/hyrax/test_data/small_dataset_hscstars"
    ids = ["36411452835238206", "36411452835248579", "36411452835249051", "36411452835250175", "36411457130203411",
           "36411457130204168", "36411457130206288", "36411457130214646", "36411457130215774", "36411457130216436"]
    bad = []
    for ext in [".astropy.csv", ".csv", ".fits", ".pq", ".votable"]:
        h = Hyrax(setup_logging=False)
        h.config["data_request"] = {g: {"data": {"dataset_class": "FitsImageDataset", "data_location": str(data),
                                                 "primary_id_field": "object_id"}} for g in ("train", "infer")}
        h.config["split"] = {"train": 1.0}
        h.config["data_set"]["filter_catalog"] = str(data / f"star_cat_correct{ext}")
        h.config["data_set"]["crop_to"] = [20, 20]
        h.config["data_set"]["object_id_column_name"] = "___object_id" if ext == ".votable" else "# object_id"
        h.config["data_set"]["filename_column_name"] = "star_filename"
        for group, p in h.prepare().items():
            ok = (len(p) == 10 and {p[i]["data"]["image"].shape for i in range(10)} == {(1, 20, 20)}
                  and [str(i) for i in p.ids()] == ids and all(f in p[0]["data"] for f in ("ira", "idec", "SNR")))
            if not ok:
                bad.append(f"{ext}/{group}")
    print("SAME" if not bad else "DIFF", "all 5 formats as upstream" if not bad else bad)
""")


# -- the 0.13 surface and the silent differences found in issue 28 ----------------------------------------

probe(
    "published_0_13_names",
    "0.13: get_context/use_context, LSDBStreamDataset, RangeReadLSSTDataset, HyraxTs2Vec, h.train_stream()",
)("""
    import hyrax
    from hyrax import Hyrax
    missing = []
    for name in ("get_context",):
        if not hasattr(hyrax, name):
            missing.append("hyrax." + name)
    try:
        from hyrax.context import use_context  # noqa: F401
    except ImportError:
        missing.append("hyrax.context.use_context")
    import hyrax.datasets as ds
    for name in ("LSDBStreamDataset", "RangeReadLSSTDataset"):
        if not hasattr(ds, name):
            missing.append("hyrax.datasets." + name)
    h = Hyrax(setup_logging=False)
    if not hasattr(h, "train_stream"):
        missing.append("h.train_stream")
    if "HyraxTs2Vec" not in h.config["model"]:
        missing.append("[model.HyraxTs2Vec]")
    print("DIFF missing:" if missing else "SAME", ", ".join(missing))
""")

probe("default_optimizer", "[optimizer] name = 'torch.optim.SGD', ['torch.optim.SGD'] lr = 0.01")("""
    from hyrax import Hyrax
    c = Hyrax(setup_logging=False).config
    name = c["optimizer"]["name"]
    lr = dict(c.get(name, {}) or {}).get("lr")
    print("SAME" if (name, lr) == ("torch.optim.SGD", 0.01) else "DIFF", name, "lr", lr)
""")

probe("cnn_infer_logits", "HyraxCNN infer writes the raw class scores (logits), not probabilities")("""
    import numpy as np
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxCNN")
    h.set_config("train.epochs", 1)
    h.set_config("data_set.HyraxRandomDataset.shape", [3, 32, 32])
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "infer")})
    h.train(); r = h.infer()
    out = np.stack([np.asarray(r[i]) for i in range(len(r))])
    probabilities = bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1, atol=1e-4))
    print("DIFF probabilities" if probabilities else "SAME logits", out.shape)
""")

probe("search_by_id_lists", "search_by_id(id, k) -> {id: [ids as a list]} (json.dumps works)")("""
    import json
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", "results"); h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_request", {g: {"data": {"dataset_class": "HyraxRandomDataset", "data_location": "d",
                                                "primary_id_field": "object_id"}} for g in ("train", "infer")})
    h.train(); r = h.infer(); h.save_to_database(); conn = h.database_connection()
    first = str(r.ids()[0])
    out = conn.search_by_id(first, k=3)
    json.dumps(out)
    print("SAME" if isinstance(out[first], list) else "DIFF", type(out[first]).__name__)
""")

probe("kafka_stream_public", "KafkaStreamDataset.stop() and .consumer_config are public")("""
    from hyrax.datasets import KafkaStreamDataset
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    h.set_config("data_set.KafkaStreamDataset.topics", ["t"])
    d = KafkaStreamDataset(h.config, "kafka://127.0.0.1:9/t")
    ok = callable(getattr(d, "stop", None)) and isinstance(getattr(d, "consumer_config", None), dict)
    print("SAME" if ok else "DIFF", "stop:", hasattr(d, "stop"), "consumer_config:", hasattr(d, "consumer_config"))
""")


def exception_text(stderr: str) -> str:
    """The exception line of the last traceback in ``stderr``, with the next two lines of its message."""
    lines = [
        ln for ln in stderr.splitlines() if ln.strip() and " INFO " not in ln and "Warning" not in ln[:80]
    ]
    last_frame = max((i for i, ln in enumerate(lines) if ln.startswith("  File ")), default=-1)
    rest = [ln for ln in lines[last_frame + 1 :] if not ln.startswith("    ")]
    start = next((i for i, ln in enumerate(rest) if not ln.startswith(" ")), 0)
    return " / ".join(ln.strip() for ln in rest[start : start + 3])[:500] or "?"


def main() -> int:
    only = sys.argv[sys.argv.index("--only") + 1 :] if "--only" in sys.argv else None
    harness = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, COMPAT_HARNESS=harness, PYTHONWARNINGS="ignore")
    for name, (upstream, code) in PROBES.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", "import os\n" + code],
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("SAME", "DIFF"))]
                if proc.returncode == 0 and lines:
                    outcome = lines[-1]
                else:
                    outcome = "ERROR " + exception_text(proc.stderr)
            except subprocess.TimeoutExpired:
                outcome = "ERROR timeout"
        print(f"{name}: {outcome}\n    upstream: {upstream}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

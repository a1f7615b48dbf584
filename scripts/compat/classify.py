"""Category of each failing upstream test, by rules written after reading the failures.

    a   the implementation's bug or gap in public behaviour (an upstream user would hit it)
    b   upstream-internal API the implementation need not mirror (private modules, class names, private
        attributes, log/message wording, test doubles of upstream internals)
    c   a deliberate, documented difference (the implementation's README.md / hyrax_default_config.toml)
    net needs the internet (or a service) that this machine does not have
    env an optional upstream dependency that is not installed here (and that the implementation does not use)
    harness an artefact of this harness (its synthetic data or its workaround), not of the implementation

Rules are tried in order on "<file>::<test name>\\n<failure message>"; the first match wins. An
unmatched failure is "?" (to be read by hand). Each rule carries the key of the finding in
the issue that describes it.
"""

from __future__ import annotations

import re

RULES: list[tuple[str, str, str]] = [
    # (regex, category, finding key)
    (r"No module named 'pooch'", "net", "pooch/Zenodo download"),
    (
        r"No module named 'hyrax\.(config_utils|models\.model_registry|datasets\.dataset_registry)'"
        r"|No module named 'hyrax\.datasets\.random\.hyrax_random_dataset'",
        "a",
        "A1 import paths of upstream's user notebooks",
    ),
    (r"No module named 'hyrax\.", "b", "upstream-internal module (import)"),
    (r"No module named '(torchvision|nested_pandas|lsdb)'", "env", "optional upstream dependency"),
    (r"scripts/convert_results\.py", "b", "upstream repository script"),
    (r"cannot import name 'plugin_utils' from 'hyrax'", "b", "upstream-internal module (import)"),
    (
        r"cannot import name '(CreateSplits|Engine|ReduceDimensions|ToOnnx|Infer|Test|Train)' from 'hyrax\.verbs",
        "b",
        "verb class names",
    ),
    (
        r"(UpstreamInternalAPI: hyrax\.datasets\.[\w.]*|Config key 'data_set\.|Unknown dataset ')"
        r"(KafkaStreamDataset|DownloadedLSSTDataset|LanceDBDataset|MultimodalUniverseDataset|HyraxHATSDataset"
        r"|NestedPandasDataset|LSSTDataset)",
        "a",
        "A10 missing dataset classes",
    ),
    (r"split\.rng_seed' does not exist", "a", "A3 hand-replaced [split] table"),
    (r"KeyError: 'size'", "a", "A2 nested dataset_config replaces the table"),
    (r"unexpected keyword argument 'trace'", "a", "A8 trace= (train/infer/test tracing)"),
    (
        r"unexpected keyword argument '(output_dir|model_path|algorithm|input_dir|database_dir)'",
        "a",
        "A7 verb keyword arguments",
    ),
    (r"'Hyrax' object has no attribute 'test'", "a", "A9 no test verb"),
    (r"Cannot read weights from .*fakeweights", "a", "A15 HyraxLoopback placeholder weights"),
    (
        r"operands could not be broadcast together with shapes \(2,3\) \(6,\)",
        "a",
        "A16 HyraxLoopback flattens its output",
    ),
    (
        r"test_on_epoch_start_called_during_(training|infer)\b.*\n.*(assert False|AssertionError)",
        "a",
        "A17 on_epoch_start: not called in infer; 'validate' during training",
    ),
    (
        r"test_patch_prepare_inputs\b.*\n.*assert 3\.0 == 6\.0",
        "a",
        "A18 instance prepare_inputs not saved/restored",
    ),
    (
        r"UpstreamInternalAPI|isinstance\(\) arg 2 must be a type|_Placeholder|UnexpectedCharError: Unexpected character: '<'",
        "b",
        "upstream-internal module/function (stub)",
    ),
    (
        r"_primary_or_first_dataset|'DataProvider' object has no attribute 'metadata_fields'",
        "b",
        "DataProvider internal methods",
    ),
    (r"augment_cache_key", "b", "augmentation cache internals"),
    (r"FakeUmap' object has no attribute 'fit_transform'", "b", "mock of umap internals"),
    (
        r"test_(constant|exponential)_scheduler|test_training_info_returned_on_model",
        "b",
        "private model._learning_rates_history",
    ),
    (
        r"Regex pattern did not match|assert '.*' in ''|assert \('deprecated to_tensor' in ''",
        "b",
        "error/log wording",
    ),
    (r"has \d+ NaN/inf value", "c", "C3 NaN is an error by default (data_set.on_bad_object)"),
    (r"best-checkpoint file", "c", "C4 best_checkpoint.pt naming"),
    (r"is not an import path for a (optimizer|criterion|scheduler)", "c", "C5 '' is not 'none' (false is)"),
    (r"@hyrax_model decorates torch\.nn\.Module subclasses", "c", "C6 @hyrax_model needs an nn.Module"),
    (
        r"has no prepare_inputs|object has no attribute 'prepare_inputs'|test_model_without_prepare_inputs_or_to_tensor\b",
        "c",
        "C7 prepare_inputs is required",
    ),
    (r"smaller than data_set\.crop_to = \[100, 100\]", "harness", "synthetic HSC cutouts too small"),
]


def classify(where: str, message: str) -> tuple[str, str]:
    text = f"{where}\n{message}"
    for pattern, category, key in RULES:
        if re.search(pattern, text):
            return category, key
    return "?", ""

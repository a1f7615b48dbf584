"""The two ONNX exporters of torch on Hyrax's autoencoder: the time of a first and of repeated calls, and
the graphs they write. Why ``to_onnx`` tries the TorchScript exporter first (docs/performance.md).

    python benchmarks/onnx_export.py [--repeats 3] [--batch 128]

Each exporter runs in its own fresh process (so the first call pays its imports, as a user's first
``to_onnx`` does): ``torch.onnx.export(dynamo=False)`` (TorchScript) and ``torch.onnx.export(dynamo=True)``
(``torch.export`` and onnxscript), on HyraxAutoencoder's ``infer_batch`` for a batch of 1x32x32 images
with a free batch dimension, as ``hyrax.models.onnx`` calls them. Printed per exporter: the first call,
the least and the median of the repeats, the opset, and the graph's operators; then whether the two
graphs give the same outputs in onnxruntime.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings


def case(exporter: str, repeats: int, batch: int, directory: str) -> dict:
    began = time.perf_counter()
    import numpy as np
    import torch

    from hyrax.config import ConfigManager
    from hyrax.models.autoencoder import HyraxAutoencoder
    from hyrax.models.onnx import _infer_module

    torch.manual_seed(0)
    sample = np.random.default_rng(0).random((batch, 1, 32, 32), dtype=np.float32)
    model = HyraxAutoencoder(ConfigManager().config, data_sample=sample[:1])
    module = _infer_module(model, single=True)
    imported = time.perf_counter() - began
    tensors = (torch.from_numpy(sample),)
    path = os.path.join(directory, f"{exporter}.onnx")
    if exporter == "torchscript":
        options = {"dynamo": False, "dynamic_axes": {"input_0": {0: "batch"}, "output": {0: "batch"}}}
    else:
        options = {"dynamo": True, "dynamic_shapes": (({0: torch.export.Dim("batch")},),)}
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tensors, path, input_names=["input_0"], output_names=["output"], **options
            )
        times.append(time.perf_counter() - start)
    import onnx

    graph = onnx.load(path)
    return {
        "imports": imported,
        "first": times[0],
        "repeats": times[1:],
        "opset": graph.opset_import[0].version,
        "operators": [node.op_type for node in graph.graph.node],
        "path": path,
        "sample": sample[:8].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        exporter, repeats, directory = args.case
        print(json.dumps(case(exporter, int(repeats), args.batch, directory)))
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    found = {}
    with tempfile.TemporaryDirectory() as directory:
        for exporter in ("torchscript", "dynamo"):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--batch",
                    str(args.batch),
                    "--case",
                    exporter,
                    str(args.repeats),
                    directory,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            found[exporter] = json.loads(done.stdout.strip().splitlines()[-1])
            run = found[exporter]
            print(
                f"{exporter:12} first call {run['first']:.3f} s, repeats min {min(run['repeats']):.3f} s "
                f"median {statistics.median(run['repeats']):.3f} s; opset {run['opset']}, "
                f"{len(run['operators'])} nodes: {' '.join(run['operators'])}"
            )
        import numpy as np
        import onnxruntime

        sample = np.asarray(found["torchscript"]["sample"], dtype=np.float32)
        outputs = [
            onnxruntime.InferenceSession(found[e]["path"]).run(None, {"input_0": sample})[0] for e in found
        ]
        difference = float(np.abs(outputs[0] - outputs[1]).max())
        print(f"largest difference between the two graphs' outputs on 8 images: {difference:.2e}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

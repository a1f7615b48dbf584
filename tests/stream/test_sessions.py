"""train_stream and infer_stream as sessions (Hyrax 0.13's calls), over a stream that is not Kafka
(tests/stream/streams.py) and over Kafka (tests/stream/broker.py): a streamed training is a run directory
with one writer, resumable from its last save after kill -9; a streamed inference writes every id once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hyrax import Hyrax
from hyrax.errors import RunBusyError
from hyrax.stream.serve import read_results
from tests.fault_table import record_landing

ROOT = Path(__file__).resolve().parents[2]
STREAM = "tests.stream.streams.CountingStream"
MODEL = "tests.stream.streams.TinyEncoder"


def stream_hyrax(tmp_path, group: str, **dataset_config) -> Hyrax:
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", MODEL)
    h.set_config("data_loader.batch_size", 8)
    h.set_config(f"data_request.{group}.data", {"dataset_class": STREAM, "dataset_config": dataset_config})
    return h


def checkpoint_of(run: Path) -> dict:
    return torch.load(run / "stream_checkpoint.pt", map_location="cpu", weights_only=True)


# -- train_stream ------------------------------------------------------------------------------------


def test_train_stream_session_as_published(tmp_path):
    """As a 0.13 notebook writes it: iterate the session, weights every save_weights_every batches and on
    close, min_batch_size, train_batch by hand, MLflow run naming, a warm start from model_weights_file."""
    from mlflow.tracking import MlflowClient

    h = stream_hyrax(tmp_path, "train_stream", n_objects=44)  # 5 batches of 8, then one of 4
    h.set_config("train_stream.save_weights_every", 2)
    h.set_config("train_stream.min_batch_size", 5)
    h.set_config("train_stream.experiment_name", "streams")
    h.set_config("train_stream.run_name", "first-stream")
    losses, skipped, saved = [], 0, []
    with h.train_stream() as session:
        for batch, metrics in session:  # noqa: B007 - the last batch is trained on by hand below
            if metrics is None:
                skipped += 1
                continue
            losses.append(metrics["loss"])
            if (session.run_dir / "stream_checkpoint.pt").exists():
                saved.append(checkpoint_of(session.run_dir)["batches"])
        by_hand = session.train_batch(batch)  # the last batch, 4 objects: under the minimum
        extra = session.train_batch(
            {"object_id": np.array(["a"] * 8), "data": {"image": np.ones((8, 1, 8, 8), np.float32)}}
        )
    model = session.close()
    run = session.run_dir
    assert (len(losses), skipped, by_hand) == (5, 1, None) and set(extra) == {"loss"}
    assert saved == [2, 2, 4, 4]  # saved after batches 2 and 4 (none before batch 2)
    assert checkpoint_of(run)["batches"] == 6 == session.batches  # and on close
    assert isinstance(model, torch.nn.Module) and model.run_dir == run
    saved_weights = torch.load(run / "example_model.pth", weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.equal(saved_weights[name], value), name
    client = MlflowClient(tracking_uri=(tmp_path / "results" / "mlflow").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("streams").experiment_id])
    assert found.info.run_name == "first-stream" and found.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(found.info.run_id, "training_loss")) == list(
        range(1, 7)
    )
    # warm start: a new run starts from those weights
    h.set_config("train_stream.model_weights_file", str(run))
    with h.train_stream() as warm:
        for name, value in warm.model.state_dict().items():
            assert torch.equal(saved_weights[name], value), name
        assert warm.run_dir != run and warm.batches == 0


def test_a_second_writer_of_a_train_stream_run_is_refused(tmp_path):
    h = stream_hyrax(tmp_path, "train_stream", n_objects=False)
    with h.train_stream() as first:
        next(iter(first))  # one batch trained
        with pytest.raises(RunBusyError, match=rf"is being written by pid {os.getpid()} \(train_stream"):
            h.train_stream(resume=first.run_dir)
    assert first.run_dir.joinpath("hyrax_run.toml").read_text().count('status = "stopped"') == 1


def _cli(config: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYRAX_FAULT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "hyrax", "train_stream", "-c", str(config), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_train_stream_killed_with_kill_9_resumes_from_its_last_saved_weights(tmp_path, write_config, seed):
    """The real command line on an endless stream, killed with SIGKILL mid-run (once it has saved twice,
    then after a seeded wait of up to ~2 saves): the run keeps its last save whole (atomic files), its lock
    dies with it (a resume is not refused), and --resume continues from that save (the same weights and
    optimizer state, the batches counted on) to a stopped, resumable run."""
    import random

    config = write_config(
        f"""
        [general]
        results_dir = "{tmp_path / "results"}"
        [model]
        name = "{MODEL}"
        [data_loader]
        batch_size = 4
        [optimizer]
        name = "torch.optim.Adam"
        [train_stream]
        save_weights_every = 3
        [data_request.train_stream.data]
        dataset_class = "{STREAM}"
        dataset_config = {{ n_objects = false, delay = 0.02 }}
        """
    )
    process = _cli(config)
    deadline = time.monotonic() + 180
    runs = []
    while True:  # killed once it has saved at least twice (at batch 6), between saves or during one
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "train_stream did not get going"
        runs = sorted((tmp_path / "results").glob("*-train_stream-*"))
        if runs and (runs[0] / "stream_checkpoint.pt").exists() and checkpoint_of(runs[0])["batches"] >= 6:
            break
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))  # a save takes 3 batches of 4 objects, ~0.25 s
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    (run,) = runs
    assert 'status = "running"' in (run / "hyrax_run.toml").read_text()  # killed: never marked
    # the saved files are whole (a kill during a save leaves at most a temporary beside them, never half a file)
    torch.load(run / "example_model.pth", weights_only=True)
    saved = checkpoint_of(run)
    assert saved["batches"] % 3 == 0 and saved["batches"] >= 6
    landed = {"saved_batches": saved["batches"], "temporaries": len(list(run.glob(".*.tmp")))}
    # the resumed session starts from exactly what was saved
    h = Hyrax(setup_logging=False)
    resumed = h.train_stream(resume=run)
    assert resumed.batches == saved["batches"]
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(saved["model"][name], value), name
    optimizer_state = resumed.model.optimizer.state_dict()["state"]
    assert int(optimizer_state[0]["step"]) == int(saved["optimizer"]["state"][0]["step"]) == saved["batches"]
    resumed.close()
    # and the command line continues it
    done = _cli(config, "--resume", run, "--max-batches", 4)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err[-3000:]
    assert f"{saved['batches'] + 4:,} batches" in out and "stopped by max_batches = 4" in out
    assert checkpoint_of(run)["batches"] == saved["batches"] + 4
    assert 'status = "stopped"' in (run / "hyrax_run.toml").read_text()
    outcome = "resumed: the saved weights and optimizer state, batches counted on, stopped"
    record_landing("train_stream", "kill -9 after its 2nd save + a seeded wait", landed, outcome)


# -- infer_stream ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Trained weights of the small model (a short streamed training)."""
    tmp_path = tmp_path_factory.mktemp("weights")
    h = stream_hyrax(tmp_path, "train_stream", n_objects=32)
    with h.train_stream() as session:
        for _ in session:
            pass
    return session.weights_file


def infer_hyrax(tmp_path, weights, **dataset_config) -> Hyrax:
    h = stream_hyrax(tmp_path, "infer_stream", **dataset_config)
    h.set_config("infer_stream.model_weights_file", str(weights))
    return h


def test_infer_stream_session_as_published_writes_every_id_once(tmp_path, weights):
    """As a 0.13 notebook writes it, over a stream that is not Kafka and sends every object twice: each
    batch's results are the model's, and the table holds each id once."""
    h = infer_hyrax(tmp_path, weights, n_objects=60, repeat=2)
    h.set_config("infer_stream.save_model_output", True)
    handed = {}
    with h.infer_stream() as session:
        for batch, results in session:
            assert results.shape == (len(batch["object_id"]), 4)
            handed.update(zip(batch["object_id"], results, strict=True))
    summary = session.close()
    assert sorted(handed) == sorted(f"obj{n}" for n in range(60))
    table = read_results(session.run_dir)
    assert sorted(table.object_id) == sorted(handed) and not table.object_id.duplicated().any()
    for object_id, vector in zip(table.object_id, table.vector, strict=True):
        np.testing.assert_allclose(vector, handed[object_id], rtol=1e-6)
    assert (summary.alerts, summary.duplicates) == (60, 60)
    # by hand (the published sample_batch form): results for every object, what is there already not written again
    from tests.stream.streams import image_of

    batch = {"object_id": np.array(["obj1", "new"]), "data": {"image": np.stack([image_of(1), image_of(7)])}}
    with h.infer_stream(resume=session.run_dir) as again:
        results = again.process(batch)
    np.testing.assert_allclose(results[0], handed["obj1"], rtol=1e-6)
    assert len(read_results(session.run_dir)) == 61


def test_infer_stream_session_fed_by_hand_as_published(tmp_path, weights):
    """hy.infer_stream(sample_batch=batch) with no stream configured: session.process(batch) by hand."""
    from tests.stream.streams import image_of

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", MODEL)
    h.set_config("infer_stream.model_weights_file", str(weights))
    h.set_config("infer_stream.save_model_output", True)
    batch = {"object_id": np.array(["a", "b"]), "data": {"image": np.stack([image_of(1), image_of(2)])}}
    with h.infer_stream(sample_batch=batch) as session:
        results = session.process(batch)
        with pytest.raises(RuntimeError, match="no stream to iterate"):
            next(iter(session))
    assert results.shape == (2, 4) and list(read_results(session.run_dir).object_id) == ["a", "b"]
    with pytest.raises(RuntimeError, match="closed"):
        session.process(batch)


def test_infer_stream_session_resumed_after_a_break_writes_nothing_twice(tmp_path, weights):
    """A session left after two batches (the loop broken), resumed on the same stream (which starts again):
    every id once; with save_model_output false (the published default) nothing is kept."""
    h = infer_hyrax(tmp_path, weights, n_objects=40)
    h.set_config("infer_stream.save_model_output", True)
    with h.infer_stream() as session:
        for number, _ in enumerate(session):
            if number == 1:
                break
    assert len(read_results(session.run_dir)) == 16
    with h.infer_stream(resume=session.run_dir) as again:
        ids = [i for batch, _ in again for i in batch["object_id"]]
    assert sorted(ids) == sorted(f"obj{n}" for n in range(16, 40))
    table = read_results(session.run_dir)
    assert len(table) == 40 and not table.object_id.duplicated().any()
    h.set_config("infer_stream.save_model_output", False)
    with h.infer_stream() as unsaved:
        assert sum(len(r) for _, r in unsaved) == 40
    assert unsaved.close() is None and not (unsaved.run_dir / "stream_results.lance").exists()


def test_a_second_writer_of_an_infer_stream_run_is_refused(tmp_path, weights):
    h = infer_hyrax(tmp_path, weights, n_objects=10)
    with (
        h.infer_stream() as first,
        pytest.raises(RunBusyError, match=rf"is being written by pid {os.getpid()} \(infer_stream"),
    ):
        h.infer_stream(resume=first.run_dir)


@pytest.mark.slow
def test_infer_stream_session_on_kafka_every_alert_once_offsets_committed(tmp_path):
    """A session on a real Kafka-protocol broker: left after its first batch, resumed, every alert's result
    once, and the group's committed offsets cover every alert (the resume was handed only the rest)."""
    from tests.stream.alerts import rubin_packet
    from tests.stream.broker import Broker
    from tests.stream.streams import TinyEncoder
    from tests.stream.test_infer_stream import _committed

    weights_file = tmp_path / "tiny.pth"
    TinyEncoder(Hyrax(setup_logging=False).config, data_sample=np.zeros((1, 3, 64, 64), np.float32)).save(
        weights_file
    )
    with Broker(tmp_path / "broker.log") as broker:
        topic = "alerts-session"
        broker.create_topic(topic, 2)
        broker.produce(
            topic, [rubin_packet(n) for n in range(100)], keys=[str(n).encode() for n in range(100)]
        )
        h = Hyrax(setup_logging=False)
        for key, value in {
            "general.results_dir": str(tmp_path / "results"),
            "model.name": MODEL,
            "infer_stream.model_weights_file": str(weights_file),
            "infer_stream.save_model_output": True,
            "data_loader.batch_size": 16,
            "data_set.KafkaStreamDataset.bootstrap_servers": broker.bootstrap,
            "data_set.KafkaStreamDataset.topics": [topic],
            "data_set.KafkaStreamDataset.group_id": f"group-{topic}",
            "data_set.KafkaStreamDataset.poll_timeout": 0.2,
            "data_set.KafkaStreamDataset.batch_flush_timeout": 0.5,
            "data_set.KafkaStreamDataset.consumer_options": {"session.timeout.ms": 6000},
        }.items():
            h.set_config(key, value)
        h.set_config(
            "data_request.infer_stream.data", {"dataset_class": "KafkaStreamDataset", "fields": ["image"]}
        )
        with h.infer_stream() as session:
            first, _ = next(iter(session))
        written = len(read_results(session.run_dir))
        assert written == len(first["object_id"]) > 0
        assert _committed(broker, topic) == written
        seen = 0
        with h.infer_stream(resume=session.run_dir) as again:
            for batch, _ in again:
                seen += len(batch["object_id"])
                if seen >= 100 - written:
                    again.stop()
        assert seen == 100 - written
        table = read_results(session.run_dir)
        assert sorted(table.alert_id.astype(int) - 7_000_000) == list(range(100))
        assert _committed(broker, topic) == 100


# -- the published by-hand loop (upstream's infer_stream_example notebook, run by the compat harness) ----


def test_data_loader_and_process_by_hand_as_published(tmp_path, weights):
    h = infer_hyrax(tmp_path, weights, n_objects=20)
    h.set_config("infer_stream.save_model_output", True)
    processed = {}
    with h.infer_stream() as session:
        for i, batch in enumerate(session.data_loader):
            result = session.process(batch)
            assert result.shape == (len(batch["object_id"]), 4)
            processed.update(zip(batch["object_id"], result, strict=True))
            print(f"Processed batch {i} with {len(batch['object_id'])} samples.")
    assert sorted(processed) == sorted(f"obj{n}" for n in range(20))
    table = read_results(session.run_dir)
    assert sorted(table.object_id) == sorted(processed)
    for object_id, vector in zip(table.object_id, table.vector, strict=True):
        np.testing.assert_allclose(vector, processed[object_id], rtol=1e-6)


def test_data_loader_without_a_stream_says_how_to_feed_it(tmp_path, weights):
    from tests.stream.streams import image_of

    h = infer_hyrax(tmp_path, weights, n_objects=4)
    h.config["data_request"] = {}
    batch = {"object_id": np.array(["a"]), "data": {"image": np.stack([image_of(1)])}}
    with (
        h.infer_stream(sample_batch=batch) as session,
        pytest.raises(RuntimeError, match="process\\(batch\\)"),
    ):
        session.data_loader  # noqa: B018 - the property raises


def test_the_latest_train_stream_run_found_as_published(tmp_path, weights):
    """tess_lsdb_stream_example: find_most_recent_results_dir(h.config, "train_stream") / weights_filename,
    of a run its session closed ("stopped", resumable); none in a folder without runs."""
    from hyrax.config_utils import find_most_recent_results_dir
    from hyrax.results.run_dir import RunDir

    h = stream_hyrax(tmp_path, "train_stream", n_objects=8)
    h.set_config("general.results_dir", str(weights.parent.parent))
    train_dir = find_most_recent_results_dir(h.config, "train_stream")
    assert train_dir == weights.parent and RunDir(train_dir).status["status"] == "stopped"
    assert (train_dir / h.config["train_stream"]["weights_filename"]).is_file()
    h.set_config("general.results_dir", str(tmp_path / "empty"))
    assert find_most_recent_results_dir(h.config, "train_stream") is None


# -- an infer_stream run as reduce_dimensions' input -------------------------------------------------


def test_reduce_dimensions_maps_an_infer_stream_run_as_published(tmp_path, weights):
    """h.reduce_dimensions(input_dir=RUN) and [data_request.reduce_dimensions] (0.13's two ways) on the run a
    session wrote: one point per object, the PCA of the vectors the session returned."""
    from sklearn.decomposition import PCA

    h = infer_hyrax(tmp_path, weights, n_objects=24)
    h.set_config("infer_stream.save_model_output", True)
    handed = {}
    with h.infer_stream() as session:
        for batch, results in session:
            handed.update(zip(batch["object_id"], results, strict=True))
    h.set_config("reduce_dimensions.name", "pca")
    mapped = h.reduce_dimensions(input_dir=str(session.run_dir))
    ids = mapped.ids().tolist()
    assert sorted(ids) == sorted(handed) and mapped.shape == (2,)
    expected = PCA(n_components=2).fit_transform(np.stack([handed[i] for i in ids]))
    got = mapped[np.arange(len(ids))]
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-3, atol=1e-4)  # up to each axis' sign
    h.set_config(
        "data_request.reduce_dimensions.data",
        {"dataset_class": "ResultDataset", "data_location": str(session.run_dir)},
    )
    from hyrax.reduce.run import input_results

    found = input_results(h.config)  # what h.reduce_dimensions() maps with that request
    assert found.data_location == session.run_dir and sorted(found.ids().tolist()) == sorted(handed)


def test_reduce_dimensions_of_a_stream_run_that_kept_nothing_says_what_to_set(tmp_path, weights):
    from hyrax.errors import ResultsError

    h = infer_hyrax(tmp_path, weights, n_objects=8)
    with h.infer_stream() as session:  # save_model_output false, the published default
        for _ in session:
            pass
    h.set_config("reduce_dimensions.name", "pca")
    with pytest.raises(ResultsError, match=r"kept no results .*infer_stream.save_model_output = true"):
        h.reduce_dimensions(input_dir=str(session.run_dir))


def test_infer_stream_of_dict_outputs_as_published(tmp_path, weights):
    """A model whose infer_batch returns a dict, in a session as 0.13 writes it: the loop gets the dict,
    the run's table a column per key (each id once), and reduce_dimensions maps its 'data' column."""
    h = infer_hyrax(tmp_path, weights, n_objects=16)
    h.set_config("model.name", "tests.stream.streams.TinyHeads")
    h.set_config("infer_stream.save_model_output", True)
    handed = {}
    with h.infer_stream() as session:
        for batch, results in session:
            assert set(results) == {"data", "norm"} and results["norm"].dtype == np.float64
            handed.update(zip(batch["object_id"], results["norm"][:, 0], strict=True))
    table = read_results(session.run_dir)
    assert {"data", "norm"} <= set(table.columns) and "vector" not in table.columns
    assert sorted(table.object_id) == sorted(handed) and not table.object_id.duplicated().any()
    for object_id, data, norm in zip(table.object_id, table.data, table.norm, strict=True):
        np.testing.assert_allclose(norm, [handed[object_id]])
        np.testing.assert_allclose(np.linalg.norm(data), handed[object_id], rtol=1e-5)
    h.set_config("reduce_dimensions.name", "pca")
    assert len(h.reduce_dimensions(input_dir=str(session.run_dir))) == 16


def test_a_dict_output_may_not_take_the_stream_tables_columns():
    from hyrax.errors import ResultsError
    from hyrax.stream.serve import stream_outputs

    assert set(stream_outputs({"data": np.ones((2, 3)), "score": np.ones(2)})) == {"data", "score"}
    with pytest.raises(ResultsError, match=r"the key\(s\) offset, topic, which infer_stream's results table"):
        stream_outputs({"topic": np.ones(2), "offset": np.ones(2)})

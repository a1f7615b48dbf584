"""StreamServer.run gives the model torch's threads less the decoding thread's core, for the run only."""

from __future__ import annotations

import pytest
import torch

from hyrax.stream.serve import StreamServer, StreamSummary


class _Recording(StreamServer):
    """The server's run around a stand-in for its loop, which records the threads torch has."""

    def __init__(self, model_threads, fail=False):  # the model, the stream and the tables are not needed
        self.model_threads, self.fail, self.seen = model_threads, fail, None

    def _run(self, max_alerts, idle_timeout):
        self.seen = torch.get_num_threads()
        if self.fail:
            raise RuntimeError("the model failed")
        return StreamSummary()


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_the_model_runs_on_the_cores_the_decoding_leaves_then_torch_is_put_back(four_threads):
    server = _Recording(model_threads=3)
    server.run()
    assert server.seen == 3 and torch.get_num_threads() == 4
    failing = _Recording(model_threads=1, fail=True)
    with pytest.raises(RuntimeError, match="the model failed"):
        failing.run()
    assert failing.seen == 1 and torch.get_num_threads() == 4
    fewer = _Recording(model_threads=8)  # never more than torch was given
    fewer.run()
    assert fewer.seen == 4
    on_gpu = _Recording(model_threads=None)
    on_gpu.run()
    assert on_gpu.seen == 4 and torch.get_num_threads() == 4


def test_the_model_threads_are_the_configured_threads_less_one(hyrax_config, monkeypatch):
    """general.threads, else the cores this process may use (hyrax.compute), less the decoding thread's."""
    import hyrax.compute
    from hyrax.stream.serve import model_threads

    cpu, gpu = torch.device("cpu"), torch.device("meta")
    monkeypatch.setattr(hyrax.compute, "_cores", lambda: 2)
    assert model_threads(hyrax_config.config, cpu) == 1
    monkeypatch.setattr(hyrax.compute, "_cores", lambda: 1)
    assert model_threads(hyrax_config.config, cpu) == 1
    hyrax_config.set_config("general.threads", 6)
    assert model_threads(hyrax_config.config, cpu) == 5
    assert model_threads(hyrax_config.config, gpu) is None

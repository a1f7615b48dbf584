"""Save Hyrax 0.13's HyraxCNN weights and its logits on a fixed input, with the 0.13 wheel's own code.

pip download hyrax==0.13 --no-deps && unzip hyrax-0.13*.whl -d h013
python tests/data/hyrax013_cnn/make.py h013/hyrax/models/hyrax_cnn.py
"""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

wheel = sys.argv[1]
pkg = types.ModuleType("h013")
pkg.__path__ = []
reg = types.ModuleType("h013.model_registry")
reg.hyrax_model = lambda cls: cls
sys.modules["h013"] = pkg
sys.modules["h013.model_registry"] = reg
spec = importlib.util.spec_from_file_location("h013.hyrax_cnn", wheel)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
torch.manual_seed(13)
config = {"model": {"HyraxCNN": {"output_classes": 4}}}
sample = (np.zeros((1, 3, 32, 32), np.float32), np.zeros(1))
net = mod.HyraxCNN(config, data_sample=sample).eval()
with torch.no_grad():
    for p in net.parameters():
        p.normal_(0, 0.2)  # weights far from the initial ones, so that the logits differ per image
out = str(Path(__file__).parent) + "/"
torch.save(net.state_dict(), out + "example_model.pth")
images = np.random.default_rng(13).random((5, 3, 32, 32), dtype=np.float32)
with torch.no_grad():
    logits = net((torch.from_numpy(images), None)).numpy()
np.savez(out + "logits.npz", images=images, logits=logits)
print(logits)

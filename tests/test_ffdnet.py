"""FFDNet, our loader for the architecture spandrel lacks: detection, the noise level from the
photo or from the person's words, and a pass through the store and the router."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instructir_desktop.inference.requests import RestoreRequest
from instructir_desktop.instructions.interpret import PlanStep
from instructir_desktop.model import ffdnet
from instructir_desktop.model.store import STORE_FOLDER_ENV, ModelStore
from tests.expert_fixtures import dncnn, save_checkpoint
from tests.test_expert_routing import runtime_with


def smooth_photo(seed: int, size: int = 96) -> torch.Tensor:
    image = torch.from_numpy(np.random.default_rng(seed).random((1, 3, size, size), dtype=np.float32))
    return F.avg_pool2d(image, 9, 1, 4) * 0.6 + 0.2


@pytest.mark.parametrize("sigma", [10.0, 25.0, 50.0])
def test_the_noise_level_is_estimated_from_the_photo(sigma):
    clean = smooth_photo(int(sigma))
    generator = torch.Generator().manual_seed(1)
    noisy = clean + torch.randn(clean.shape, generator=generator) * sigma / 255
    assert ffdnet.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.1)
    assert ffdnet.estimate_sigma(clean) < 2


def test_the_persons_words_set_the_noise_level():
    assert ffdnet.sigma_from_words("remove the noise, sigma 30") == 30
    assert ffdnet.sigma_from_words("there is slight grain") == 10
    assert ffdnet.sigma_from_words("heavy noise everywhere") == 50
    assert ffdnet.sigma_from_words("sigma=400") == ffdnet.MAX_SIGMA
    assert ffdnet.sigma_from_words("remove the noise") is None


def test_detection_takes_kair_ffdnet_and_leaves_other_layouts_alone():
    torch.manual_seed(0)
    network = ffdnet.FFDNet(channels=3, features=16, layers=5)
    state = {name: value.clone() for name, value in network.state_dict().items()}
    assert sorted(state)[:2] == ["model.0.bias", "model.0.weight"] and "model.8.weight" in state
    found = ffdnet.detect(state)
    assert found is not None and found.channels == 3
    image = torch.rand(1, 3, 21, 30)
    level = torch.tensor([25 / 255])
    with torch.no_grad():
        assert torch.equal(found(image, level), network(image, level))
        assert found(image, level).shape == image.shape  # odd sides are padded and cropped back
    assert ffdnet.detect(dncnn().state_dict()) is None  # DnCNN's convolutions look alike: not FFDNet
    damaged = dict(state)
    del damaged["model.4.bias"]
    assert ffdnet.detect(damaged) is None


def test_an_added_ffdnet_runs_a_denoise_step_at_the_level_the_words_give(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_FOLDER_ENV, str(tmp_path / "store"))
    store = ModelStore()
    torch.manual_seed(3)
    model = store.add(save_checkpoint(ffdnet.FFDNet(3, 16, 5), tmp_path / "ffdnet.pth"), make_default=True)
    assert (model.architecture, model.tasks) == ("FFDNet", ("denoise",))
    image = smooth_photo(4, 48)[0].permute(1, 2, 0).numpy()
    runtime = runtime_with(store)

    def restored(words: str) -> np.ndarray:
        step = PlanStep("denoise", 1.0, words)
        return runtime.restore(RestoreRequest(image, (step,))).restored

    mild, strong = restored("sigma 5"), restored("sigma 60")
    assert not np.allclose(mild, strong, atol=1e-3)
    network = ffdnet.detect(torch.load(tmp_path / "ffdnet.pth", weights_only=True))
    with torch.no_grad():
        expected = network(torch.from_numpy(image).permute(2, 0, 1)[None], torch.tensor([60 / 255])).clamp(0, 1)
    np.testing.assert_allclose(strong, expected[0].permute(1, 2, 0).numpy(), atol=1e-5)

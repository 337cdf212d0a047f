"""Tests for instructir_desktop.model: the network, its config detection, weights files, the text
head and the model registry. Everything runs on the CPU with random weights or the small published
text head in tests/data/reference; no download, no real sentence encoder."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from instructir_desktop.model import registry
from instructir_desktop.model import weights as weights_module
from instructir_desktop.model.network import (
    PUBLISHED_7D_CONFIG,
    InstructionConditionBlock,
    InstructIRNet,
    NAFBlock,
    NetworkConfig,
    count_parameters,
    detect_config,
    layer_norm_channels,
    pad_to_multiple,
)
from instructir_desktop.model.registry import (
    HEAD_FILE,
    IMAGE_FILE,
    MANIFEST_FILE,
    NO_WEIGHTS_HELP,
    PUBLISHED_HEAD_FILE,
    PUBLISHED_IMAGE_FILE,
    available_models,
    build_network,
    default_model_spec,
    load_model,
    save_model_folder,
    spec_from_files,
    spec_from_folder,
)
from instructir_desktop.model.tasks import CLASS_NAMES, TASKS, check_task
from instructir_desktop.model.text import SENTENCE_DIM, InstructionEncoder, SentenceTransformerEncoder, TextHead
from instructir_desktop.model.weights import WeightsError, load_state_dict, save_state_dict

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
REFERENCE_JSON = REFERENCE / "instructir-7d-state-dict.json"
PUBLISHED_HEAD = REFERENCE / "lm_instructir-7d.pt"

SMALL_CONFIG = NetworkConfig(width=16, enc_blocks=(1, 1, 2, 4), middle_blocks=2, dec_blocks=(1, 1, 1, 1))
TINY_CONFIG = NetworkConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), text_dim=32)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE_JSON.read_text())


@pytest.fixture(scope="module")
def published_net() -> InstructIRNet:
    return InstructIRNet(PUBLISHED_7D_CONFIG)


def _random_state_from_shapes(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def _randomise(module: nn.Module, seed: int = 0, scale: float = 0.2) -> nn.Module:
    """Give every parameter (residual scales included) non-zero random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return module


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=-1)


# ----------------------------------------------------------------------------- network shape


def test_reference_json_describes_the_published_config(reference: dict) -> None:
    image = reference["image_model"]
    assert NetworkConfig.from_dict(image["config"]) == PUBLISHED_7D_CONFIG
    head = reference["text_head"]
    assert head["config"]["num_classes"] == len(TASKS) == 7


def test_published_config_state_dict_matches_reference_exactly(reference: dict, published_net: InstructIRNet) -> None:
    expected = {name: list(shape) for name, shape in reference["image_model"]["state_dict"].items()}
    actual = {name: list(tensor.shape) for name, tensor in published_net.state_dict().items()}
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    assert not missing, f"names the published checkpoint has but we lack: {missing[:10]}"
    assert not unexpected, f"names we have but the published checkpoint lacks: {unexpected[:10]}"
    wrong = {name: (actual[name], shape) for name, shape in expected.items() if actual[name] != shape}
    assert not wrong, f"shape mismatches (ours, published): {dict(list(wrong.items())[:10])}"
    assert count_parameters(published_net) == reference["image_model"]["parameter_count"] == 15_843_363


def test_state_dict_built_from_reference_loads_strictly(reference: dict, published_net: InstructIRNet) -> None:
    state = _random_state_from_shapes(reference["image_model"]["state_dict"])
    result = published_net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = published_net.state_dict()
    for name in ("intro.weight", "enc_cond.3.fc.weight", "ups.0.0.weight", "middle_blks.3.beta", "ending.bias"):
        assert torch.equal(loaded[name], state[name])


def test_detect_config_from_reference_shapes_and_tensors(reference: dict) -> None:
    shapes = reference["image_model"]["state_dict"]
    assert detect_config(shapes) == PUBLISHED_7D_CONFIG
    tensors = {name: torch.empty(shape) for name, shape in shapes.items()}
    assert detect_config(tensors) == PUBLISHED_7D_CONFIG


@pytest.mark.parametrize(
    "config",
    [
        SMALL_CONFIG,
        TINY_CONFIG,
        NetworkConfig(width=12, enc_blocks=(2, 0, 3), middle_blocks=0, dec_blocks=(1, 2, 3), text_dim=64),
        NetworkConfig(width=32, enc_blocks=(1, 2, 4), middle_blocks=2, dec_blocks=(1, 1, 1), stem=2),
        NetworkConfig(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,), text_dim=16, stem=4),
    ],
    ids=["small-16", "tiny-8", "odd", "stem-2", "stem-4"],
)
def test_detect_config_round_trips_other_shapes(config: NetworkConfig) -> None:
    assert detect_config(InstructIRNet(config).state_dict()) == config


def test_detect_config_of_small_config_is_not_the_published_one() -> None:
    detected = detect_config(InstructIRNet(SMALL_CONFIG).state_dict())
    assert detected == SMALL_CONFIG
    assert detected != PUBLISHED_7D_CONFIG
    assert detected.enc_blocks == (1, 1, 2, 4) and detected.middle_blocks == 2 and detected.width == 16


def test_stem_network_keeps_size_and_learns_a_residual_at_full_resolution() -> None:
    config = NetworkConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), text_dim=32, stem=2)
    network = InstructIRNet(config)
    assert tuple(network.intro.weight.shape) == (8, 12, 3, 3)
    assert tuple(network.ending.weight.shape) == (12, 8, 3, 3)
    image = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        # A zero ending leaves the identity, and a bias on one unshuffled channel moves exactly one
        # pixel phase of one colour: the pixel shuffle puts the residual back at full resolution.
        network.ending.weight.zero_()
        network.ending.bias.zero_()
        torch.testing.assert_close(network(image, torch.randn(1, 32)), image)
        network.ending.bias[4 * 1 + 2] = 0.25  # green, row phase 1, column phase 0
        moved = network(image, torch.randn(1, 32)) - image
    assert moved.shape == image.shape
    expected = torch.zeros_like(image)
    expected[0, 1, 1::2, 0::2] = 0.25
    torch.testing.assert_close(moved, expected)


def test_detect_config_refuses_other_networks() -> None:
    with pytest.raises(ValueError, match="not an InstructIR image network"):
        detect_config({"conv.weight": torch.zeros(8, 3, 3, 3)})
    with pytest.raises(ValueError, match="not an InstructIR image network"):
        detect_config({"intro.weight": torch.zeros(8, 3, 3, 3)})


def test_network_config_validation_and_dict_round_trip() -> None:
    with pytest.raises(ValueError):
        NetworkConfig(enc_blocks=(1, 1), dec_blocks=(1, 1, 1))
    with pytest.raises(ValueError):
        NetworkConfig(width=0)
    from_lists = NetworkConfig.from_dict({**SMALL_CONFIG.to_dict(), "enc_blocks": [1, 1, 2, 4], "ignored": 1})
    assert from_lists == SMALL_CONFIG
    assert hash(from_lists) == hash(SMALL_CONFIG)
    assert SMALL_CONFIG.size_multiple == 16 and TINY_CONFIG.size_multiple == 4


# ----------------------------------------------------------------------------- forward pass


def test_layer_norm_is_over_channels_per_pixel() -> None:
    x = torch.randn(2, 6, 5, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    weight, bias = torch.linspace(0.5, 1.5, 6), torch.linspace(-0.2, 0.2, 6)
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer_norm_channels(x, weight, bias), expected, atol=1e-5, rtol=1e-5)
    # Channels-last input (what training uses) gives the same numbers.
    torch.testing.assert_close(
        layer_norm_channels(x.contiguous(memory_format=torch.channels_last), weight, bias),
        expected,
        atol=1e-5,
        rtol=1e-5,
    )


def test_fresh_blocks_are_the_identity() -> None:
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(NAFBlock(8)(x), x)
    icb = InstructionConditionBlock(8, 16)
    torch.testing.assert_close(icb(x, _unit(2, 16, 0)), x)


@pytest.mark.parametrize("size", [(37, 50), (16, 16), (5, 7), (1, 1), (33, 17)])
def test_forward_keeps_the_input_size(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = _randomise(InstructIRNet(SMALL_CONFIG)).eval()
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = net(image, _unit(2, SMALL_CONFIG.text_dim, 1))
    assert out.shape == image.shape
    assert torch.isfinite(out).all()


def test_pad_to_multiple_pads_bottom_right_only() -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 8, 8)
    torch.testing.assert_close(padded[..., :5, :7], x)
    assert pad_to_multiple(x[..., :4, :4], 4) is not None
    assert pad_to_multiple(torch.zeros(1, 3, 8, 16), 8).shape == (1, 3, 8, 16)
    # Too small for reflection: replicate still gives a valid tensor.
    assert pad_to_multiple(torch.rand(1, 3, 1, 2), 16).shape == (1, 3, 16, 16)


def test_output_depends_on_the_instruction_embedding() -> None:
    net = _randomise(InstructIRNet(TINY_CONFIG), seed=3).eval()
    image = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(5))
    first, second = _unit(1, TINY_CONFIG.text_dim, 10), _unit(1, TINY_CONFIG.text_dim, 11)
    with torch.no_grad():
        out_first = net(image, first)
        out_again = net(image, first.clone())
        out_second = net(image, second)
    torch.testing.assert_close(out_first, out_again)
    difference = (out_first - out_second).abs().mean().item()
    assert difference > 1e-3, f"different instructions gave nearly the same output (mean |Δ| {difference:.2e})"


def test_samples_in_a_batch_are_independent() -> None:
    net = _randomise(InstructIRNet(TINY_CONFIG), seed=4).eval()
    images = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(6))
    embeddings = _unit(2, TINY_CONFIG.text_dim, 12)
    with torch.no_grad():
        together = net(images, embeddings)
        alone = torch.cat([net(images[i : i + 1], embeddings[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_global_residual_zero_ending_gives_identity() -> None:
    net = _randomise(InstructIRNet(TINY_CONFIG), seed=7).eval()
    with torch.no_grad():
        net.ending.weight.zero_()
        net.ending.bias.zero_()
        image = torch.rand(1, 3, 13, 19)
        out = net(image, _unit(1, TINY_CONFIG.text_dim, 0))
    torch.testing.assert_close(out, image)


# ----------------------------------------------------------------------------- weights files


class _Arbitrary:
    """A plain Python object: weights_only loading must refuse it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _plant(path: str) -> None:
    Path(path).write_text("code ran")


class _Hostile:
    """Unpickling this with weights_only=False would run ``_plant``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_plant, (str(self.marker),))


def test_published_text_head_loads_with_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real_load = torch.load

    def spying_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(weights_module.torch, "load", spying_load)
    state, metadata = load_state_dict(PUBLISHED_HEAD)
    assert calls and all(call.get("weights_only") is True for call in calls)
    assert metadata == {}
    assert {name: tuple(t.shape) for name, t in state.items()} == {
        "fc1.weight": (256, 384),
        "fc1.bias": (256,),
        "fc2.weight": (7, 256),
        "fc2.bias": (7,),
    }
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in state.values())

    head = TextHead.from_state_dict(state)
    assert isinstance(head, TextHead) and not head.training
    assert head.fc1.in_features == 384 and head.fc1.out_features == 256 and head.fc2.out_features == 7
    embedding, logits = head(_unit(3, 384, 0))
    assert logits.shape == (3, 7)
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(3))


def test_pickled_arbitrary_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.pt"
    torch.save({"fc1.weight": torch.zeros(2, 2), "extra": _Arbitrary()}, path)
    with pytest.raises(WeightsError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "sneaky.pt" in message and "cannot be read as a PyTorch state dict" in message
    assert "\n" not in message


def test_hostile_pickle_does_not_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "hostile.pth"
    torch.save({"weight": torch.zeros(1), "x": _Hostile(marker)}, path)
    with pytest.raises(WeightsError, match=r"hostile\.pth"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("model.onnx", b"\x08\x07onnx", r"unsupported weights format \.onnx"),
        ("weights", b"abc", r"unsupported weights format \(no extension\)"),
        ("garbage.pt", b"this is not a zip nor a pickle", "cannot be read as a PyTorch state dict"),
        ("garbage.safetensors", b"\xff" * 64, "not a valid safetensors file"),
        ("empty.safetensors", b"", "not a valid safetensors file"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=pattern) as info:
        load_state_dict(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_non_state_dicts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such weights file"):
        load_state_dict(tmp_path / "absent.safetensors")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="does not contain a state dict of tensors"):
        load_state_dict(tmp_path / "list.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "numbers.pt")
    with pytest.raises(WeightsError, match="does not contain a state dict of tensors"):
        load_state_dict(tmp_path / "numbers.pt")


def test_nested_and_wrapped_pickles_are_unwrapped(tmp_path: Path) -> None:
    inner = {"module.fc.weight": torch.ones(2, 3), "_orig_mod.fc.bias": torch.zeros(2)}
    torch.save({"params_ema": inner, "iter": 10}, tmp_path / "nested.ckpt")
    state, _ = load_state_dict(tmp_path / "nested.ckpt")
    assert set(state) == {"fc.weight", "fc.bias"}
    torch.save({"state_dict": {"model": {"w": torch.ones(1, dtype=torch.float16)}}}, tmp_path / "deep.pth")
    deep, _ = load_state_dict(tmp_path / "deep.pth")
    assert deep["w"].dtype == torch.float32


def test_safetensors_round_trip_in_fp16(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {
        "a.weight": torch.randn(4, 5, generator=generator),
        "b.bias": torch.randn(7, generator=generator).t(),
        "counter": torch.arange(6, dtype=torch.int64),
    }
    path = save_state_dict(tmp_path / "w.safetensors", state, {"network": {"width": 8}, "id": "abc"})
    assert path == tmp_path / "w.safetensors"
    assert not list(tmp_path.glob("*.partial"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with safe_open(str(path), framework="pt") as handle:
        assert handle.get_tensor("a.weight").dtype == torch.float16
        assert handle.get_tensor("counter").dtype == torch.int64
    loaded, metadata = load_state_dict(path)
    assert loaded["a.weight"].dtype == torch.float32
    torch.testing.assert_close(loaded["a.weight"], state["a.weight"].half().float(), atol=0, rtol=0)
    assert not torch.equal(loaded["a.weight"], state["a.weight"])  # it really went through fp16
    torch.testing.assert_close(loaded["a.weight"], state["a.weight"], atol=2e-3, rtol=1e-3)
    assert torch.equal(loaded["counter"], state["counter"])
    assert json.loads(metadata["network"]) == {"width": 8}
    assert metadata["id"] == "abc"


def test_safetensors_keeps_fp32_when_asked(tmp_path: Path) -> None:
    state = {"x": torch.randn(3, 3)}
    save_state_dict(tmp_path / "full.safetensors", state, dtype=None)
    loaded, metadata = load_state_dict(tmp_path / "full.safetensors")
    assert torch.equal(loaded["x"], state["x"])
    assert metadata == {}


def test_a_small_network_round_trips_through_safetensors(tmp_path: Path) -> None:
    net = _randomise(InstructIRNet(TINY_CONFIG), seed=9).eval()
    save_state_dict(tmp_path / "image.safetensors", net.state_dict())
    state, _ = load_state_dict(tmp_path / "image.safetensors")
    rebuilt = build_network(state, "image.safetensors")
    assert rebuilt.config == TINY_CONFIG
    image = torch.rand(1, 3, 16, 16)
    embedding = _unit(1, TINY_CONFIG.text_dim, 2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(image, embedding), net(image, embedding), atol=0.05, rtol=0.05)


def test_build_network_reports_bad_weights_as_weights_error() -> None:
    state = InstructIRNet(TINY_CONFIG).state_dict()
    state["intro.bias"] = torch.zeros(5)
    with pytest.raises(WeightsError, match="do not fit"):
        build_network(state, "odd.safetensors")
    with pytest.raises(WeightsError, match="not an InstructIR image network"):
        build_network({"fc.weight": torch.zeros(2, 2)}, "other.safetensors")


# ----------------------------------------------------------------------------- text side


class _CountingEncoder:
    identifier = "fake"

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension
        self.calls: list[list[str]] = []

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
            vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows)


def test_instruction_encoder_caches_and_normalises() -> None:
    encoder = _CountingEncoder()
    head = _randomise(TextHead(384, 32, len(CLASS_NAMES)), seed=1)
    instructions = InstructionEncoder(encoder, head, cache_size=2)
    first = instructions.encode(["remove  the noise", "brighten it", "remove the noise"])
    assert encoder.calls == [["remove the noise", "brighten it"]]
    assert first[0] is first[2]
    for item in first:
        assert item.embedding.shape == (32,) and item.probabilities.shape == (len(CLASS_NAMES),)
        assert abs(float(np.linalg.norm(item.embedding)) - 1) < 1e-5
        assert abs(float(item.probabilities.sum()) - 1) < 1e-5
    assert not np.allclose(first[0].embedding, first[1].embedding)
    instructions.encode_one("brighten it")
    assert len(encoder.calls) == 1
    instructions.encode_one("dehaze")  # evicts the least recently used entry ("remove the noise")
    instructions.encode_one("remove the noise")
    assert encoder.calls[-1] == ["remove the noise"]


def test_instruction_encoder_refuses_mismatched_dimensions() -> None:
    with pytest.raises(WeightsError, match="expects 384-d"):
        InstructionEncoder(_CountingEncoder(dimension=768), TextHead(384, 32, 8))


def test_text_head_from_other_state_is_refused() -> None:
    with pytest.raises(WeightsError, match="not a text head"):
        TextHead.from_state_dict({"weight": torch.zeros(3, 3)})


@pytest.mark.slow
def test_real_default_encoder_works_offline_with_the_published_head() -> None:
    """The packaged all-MiniLM-L6-v2 loads from site-packages and feeds the text head (the one real-encoder test)."""
    encoder = SentenceTransformerEncoder()
    assert encoder.dimension == SENTENCE_DIM
    vectors = encoder.encode(["remove the noise", "get rid of the grain", "it is too dark, brighten it"])
    assert vectors.shape == (3, SENTENCE_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    head = TextHead.from_state_dict(load_state_dict(PUBLISHED_HEAD)[0])
    encoded = InstructionEncoder(encoder, head).encode_one("remove the noise")
    assert encoded.embedding.shape == (256,) and encoded.probabilities.shape == (7,)


def test_check_task() -> None:
    assert check_task("dehaze") == "dehaze"
    with pytest.raises(ValueError, match="unknown task"):
        check_task("colorize")
    assert CLASS_NAMES[: len(TASKS)] == TASKS and CLASS_NAMES[-1] == "none"


# ----------------------------------------------------------------------------- registry


def _write_model_folder(
    folder: Path, config: NetworkConfig = TINY_CONFIG, head_dim: int | None = None
) -> InstructIRNet:
    net = _randomise(InstructIRNet(config), seed=11).eval()
    head = TextHead(384, head_dim or config.text_dim, len(CLASS_NAMES))
    save_model_folder(
        folder,
        image_state=net.state_dict(),
        head_state=head.state_dict(),
        network=config,
        model_id="test-model",
        name="Test model",
        extra={"training": {"steps": 3}},
    )
    return net


def test_model_folder_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    net = _write_model_folder(folder)
    assert {p.name for p in folder.iterdir()} == {IMAGE_FILE, HEAD_FILE, MANIFEST_FILE}
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert NetworkConfig.from_dict(manifest["network"]) == TINY_CONFIG and manifest["classes"] == list(CLASS_NAMES)

    spec = spec_from_folder(folder)
    assert spec.id == "test-model" and spec.name == "Test model" and spec.source == "folder"
    assert spec.image_weights == folder / IMAGE_FILE and spec.text_head == folder / HEAD_FILE
    assert spec.info["training"] == {"steps": 3}

    model = load_model(spec)
    assert model.config == TINY_CONFIG
    assert model.classes == CLASS_NAMES
    assert model.head.fc2.out_features == len(CLASS_NAMES)
    assert not model.network.training
    torch.testing.assert_close(
        model.network.state_dict()["intro.weight"], net.state_dict()["intro.weight"], atol=1e-3, rtol=1e-3
    )


def test_folder_with_missing_files_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="model folder not found"):
        spec_from_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match=f"no {IMAGE_FILE} or {PUBLISHED_IMAGE_FILE}"):
        spec_from_folder(empty)

    headless = tmp_path / "headless"
    _write_model_folder(headless)
    (headless / HEAD_FILE).unlink()
    spec = spec_from_folder(headless)
    assert spec.text_head is None
    with pytest.raises(WeightsError, match="no text head file"):
        load_model(spec)

    broken = tmp_path / "broken-manifest"
    _write_model_folder(broken)
    (broken / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable model description"):
        spec_from_folder(broken)


def test_folder_without_manifest_uses_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    _write_model_folder(folder)
    (folder / MANIFEST_FILE).unlink()
    spec = spec_from_folder(folder)
    assert spec.id == "bare" and spec.name == "bare"
    assert load_model(spec).classes == CLASS_NAMES


def test_head_and_network_dimensions_must_agree(tmp_path: Path) -> None:
    folder = tmp_path / "mismatch"
    _write_model_folder(folder, head_dim=16)
    with pytest.raises(WeightsError, match="16-d embeddings but the image network expects 32"):
        load_model(spec_from_folder(folder))


def test_published_pair_loads_strictly(tmp_path: Path, reference: dict) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    state = {k: v.half() for k, v in _random_state_from_shapes(reference["image_model"]["state_dict"]).items()}
    torch.save({"params": state}, folder / PUBLISHED_IMAGE_FILE)
    shutil.copy(PUBLISHED_HEAD, folder / PUBLISHED_HEAD_FILE)

    spec = spec_from_folder(folder)
    assert spec.source == "published" and spec.classes == TASKS
    model = load_model(spec)
    assert model.config == PUBLISHED_7D_CONFIG
    assert model.classes == TASKS
    assert torch.equal(model.network.state_dict()["ending.weight"], state["ending.weight"].float())


def test_default_model_spec_with_and_without_bundled_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bundled-empty"
    empty.mkdir()
    monkeypatch.setattr(registry, "bundled_model_folder", lambda: empty)
    with pytest.raises(WeightsError) as info:
        default_model_spec()
    assert str(info.value) == NO_WEIGHTS_HELP
    assert "--weights" in NO_WEIGHTS_HELP and "train" in NO_WEIGHTS_HELP
    assert available_models() == []

    shipped = tmp_path / "bundled"
    _write_model_folder(shipped)
    monkeypatch.setattr(registry, "bundled_model_folder", lambda: shipped)
    spec = default_model_spec()
    assert spec.id == registry.BUNDLED_MODEL_ID and spec.source == "bundled"
    assert load_model(spec).config == TINY_CONFIG


def test_available_models_skips_folders_without_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "bundled_model_folder", lambda: tmp_path / "no-bundle")
    good = tmp_path / "good"
    _write_model_folder(good)
    (tmp_path / "junk").mkdir()
    specs = available_models([tmp_path / "junk", good, tmp_path / "missing"])
    assert [s.id for s in specs] == ["test-model"]


def test_spec_from_files_finds_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "bundled_model_folder", lambda: tmp_path / "no-bundle")
    folder = tmp_path / "m"
    _write_model_folder(folder)
    beside = spec_from_files(folder / IMAGE_FILE)
    assert beside.text_head == folder / HEAD_FILE and beside.source == "files" and beside.classes == CLASS_NAMES
    assert load_model(beside).config == TINY_CONFIG

    lonely = tmp_path / "lonely" / "weights.safetensors"
    lonely.parent.mkdir()
    shutil.copy(folder / IMAGE_FILE, lonely)
    assert spec_from_files(lonely).text_head is None
    shutil.copy(PUBLISHED_HEAD, lonely.with_name(PUBLISHED_HEAD_FILE))
    published_head = spec_from_files(lonely)
    assert published_head.text_head == lonely.with_name(PUBLISHED_HEAD_FILE)
    assert published_head.classes == TASKS
    explicit = spec_from_files(lonely, folder / HEAD_FILE)
    assert explicit.text_head == folder / HEAD_FILE and explicit.classes == CLASS_NAMES

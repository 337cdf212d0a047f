"""Tests for instructir_desktop.training: the trainer end to end on a tiny network with a fake
sentence encoder, its resume and schedule, the text head, the corpus vectors, the patch sampler
and the evaluation metrics and report."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import (
    HEAD_FILE,
    LEXICAL_FILE,
    bundled_model_folder,
    load_model,
    spec_from_folder,
)
from instructir_desktop.model.tasks import CLASS_NAMES, TASKS
from instructir_desktop.model.text import TextHead
from instructir_desktop.model.weights import load_state_dict, save_state_dict
from instructir_desktop.training import trainer
from instructir_desktop.training.corpus import load_corpus
from instructir_desktop.training.evaluation import (
    EVAL_SETTINGS,
    degrade_for_setting,
    evaluate,
    psnr,
    resolve_eval_data,
    rows_to_markdown,
    select_settings,
    ssim,
)
from instructir_desktop.training.patches import PatchSampler, list_images, load_rgb_uint8, to_float
from instructir_desktop.training.text_data import (
    EncodedCorpus,
    augment_text,
    augmented,
    encode_corpus,
    encode_texts,
)
from instructir_desktop.training.text_head import evaluate_text_head, retrain_classifier, train_text_head
from instructir_desktop.training.trainer import (
    TrainConfig,
    budget_used,
    frequency_l1,
    learning_rate,
    summarise_metrics,
    update_ema,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CONFIGS = Path(trainer.__file__).resolve().parent / "configs"
TRAIN_NETWORK = NetworkConfig(width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1))
TRAIN_STEPS = 60
INTERRUPT_AT = 30


class FakeEncoder:
    """Stands in for SentenceTransformerEncoder: a stable random unit vector per text."""

    identifier = "fake-encoder"
    dimension = 384

    def __init__(self, folder: object = None, device: str = "cpu") -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows) if rows else np.zeros((0, self.dimension), np.float32)


def smooth_image(rng: np.random.Generator, height: int, width: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    coarse = torch.from_numpy(rng.random((1, 3, 5, 6), dtype=np.float32))
    image = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    image = low + (high - low) * image
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_images(folder: Path, count: int, height: int, width: int, seed: int, **kwargs: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(smooth_image(rng, height, width, **kwargs)).save(folder / f"{index}.png")
    return folder


# ----------------------------------------------------------------------------- end-to-end training


@dataclass
class TrainingRuns:
    straight: Path  # 60 steps in one go
    resumed: Path  # interrupted at step 30 by SIGINT, then resumed to 60
    straight_log: list[str]
    first_log: list[str]
    second_log: list[str]
    config: TrainConfig
    handler_before: object


def _config(output: Path, data: Path, val: Path) -> TrainConfig:
    return replace(
        trainer.tiny_config(str(output), [str(data)], steps=TRAIN_STEPS),
        network=TRAIN_NETWORK,
        val_data=str(val),
        warmup_steps=5,
        lr=2e-3,
        log_every=10,
        validate_every=TRAIN_STEPS,
        device="cpu",
        threads=1,
        seed=0,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> TrainingRuns:
    root = tmp_path_factory.mktemp("training")
    data = write_images(root / "data", 4, 72, 88, seed=0)
    val = write_images(root / "val", 2, 200, 208, seed=1)
    previous_threads = torch.get_num_threads()
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "SentenceTransformerEncoder", FakeEncoder)
        # A few epochs are enough for a head on fake vectors; the full 100 take seconds.
        patch.setattr(trainer, "train_text_head", functools.partial(train_text_head, epochs=3))
        straight_log: list[str] = []
        config = _config(root / "straight", data, val)
        trainer.train(config, log=straight_log.append)

        first_log: list[str] = []

        def interrupt(message: str) -> None:
            first_log.append(message)
            if message.startswith(f"step {INTERRUPT_AT}/"):
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C in the terminal does

        resumed_config = _config(root / "resumed", data, val)
        trainer.train(resumed_config, log=interrupt)
        second_log: list[str] = []
        trainer.train(resumed_config, log=second_log.append)
    torch.set_num_threads(previous_threads)
    return TrainingRuns(
        root / "straight", root / "resumed", straight_log, first_log, second_log, config, handler_before
    )


def _metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_training_loss_goes_down(runs: TrainingRuns) -> None:
    losses = [record["loss"] for record in _metrics(runs.straight) if "loss" in record]
    assert len(losses) == TRAIN_STEPS // 10
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    first, last = losses[0], float(np.mean(losses[-2:]))
    assert last < 0.8 * first, f"loss did not fall: first window {first:.4f}, last two windows {last:.4f}"


def test_training_learns_to_brighten_and_dehaze(runs: TrainingRuns) -> None:
    validation = [record for record in _metrics(runs.straight) if "validation" in record]
    assert [record["step"] for record in validation] == [TRAIN_STEPS]
    scores = validation[0]["validation"]
    assert set(scores) == set(TASKS) | {f"{task}_input" for task in TASKS}
    gains = {task: scores[task] - scores[f"{task}_input"] for task in ("lowlight", "dehaze")}
    assert all(gain > 0.3 for gain in gains.values()), f"PSNR gains over the input: {gains}"
    summary = summarise_metrics(runs.straight / "metrics.jsonl")
    assert summary["validation"] == validation[0]
    assert summary["patches_per_s"] > 0
    assert any(line.startswith("validation denoise") for line in runs.straight_log)


def test_training_writes_a_loadable_model_folder(runs: TrainingRuns) -> None:
    out = runs.straight
    assert json.loads((out / "config.json").read_text())["network"]["width"] == TRAIN_NETWORK.width
    assert "held-out accuracy" in (out / "text_head_report.md").read_text()
    head_state, head_meta = load_state_dict(out / "text_head.safetensors")
    assert json.loads(head_meta["classes"]) == list(CLASS_NAMES)
    assert head_state["fc2.weight"].shape == (len(CLASS_NAMES), 256)
    assert list((out / "cache").glob("vectors-*.npy")), "corpus vectors were not cached"

    spec = spec_from_folder(out / "model")
    assert spec.id == runs.config.model_id and spec.name == runs.config.model_name
    assert spec.info["training"]["steps"] == TRAIN_STEPS
    model = load_model(spec)
    assert model.config == TRAIN_NETWORK
    assert model.classes == CLASS_NAMES
    # The exported network is the EMA of a trained one, not a fresh network.
    fresh = InstructIRNet(TRAIN_NETWORK).state_dict()
    trained = model.network.state_dict()
    assert any(float(trained[name].abs().max()) > 0 for name in trained if name.endswith(".beta"))
    assert not torch.equal(trained["enc_cond.0.fc.weight"], fresh["enc_cond.0.fc.weight"])


def test_interrupted_training_resumes_and_continues_the_step_count(runs: TrainingRuns) -> None:
    assert runs.first_log[-1].startswith(f"step {INTERRUPT_AT}/{TRAIN_STEPS}")
    assert f"resumed at step {INTERRUPT_AT}" in runs.second_log
    steps = [record["step"] for record in _metrics(runs.resumed) if "loss" in record]
    assert steps == list(range(10, TRAIN_STEPS + 1, 10))
    checkpoint = torch.load(runs.resumed / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert int(checkpoint["step"]) == TRAIN_STEPS
    assert spec_from_folder(runs.resumed / "model").info["training"]["steps"] == TRAIN_STEPS
    # The interrupt handler is put back once training ends.
    assert signal.getsignal(signal.SIGINT) is runs.handler_before


def test_resumed_run_matches_an_uninterrupted_one(runs: TrainingRuns) -> None:
    straight = torch.load(runs.straight / "checkpoint.pt", map_location="cpu", weights_only=True)
    resumed = torch.load(runs.resumed / "checkpoint.pt", map_location="cpu", weights_only=True)
    for part in ("model", "ema"):
        for name, tensor in straight[part].items():
            torch.testing.assert_close(resumed[part][name], tensor, atol=1e-6, rtol=1e-5, msg=f"{part}.{name}")
    assert torch.equal(straight["cpu_rng"], resumed["cpu_rng"])
    straight_losses = [r["loss"] for r in _metrics(runs.straight) if "loss" in r]
    resumed_losses = [r["loss"] for r in _metrics(runs.resumed) if "loss" in r]
    np.testing.assert_allclose(resumed_losses, straight_losses, rtol=1e-4)


def test_training_reuses_a_given_text_head_and_refuses_a_seven_class_one(
    runs: TrainingRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer, "SentenceTransformerEncoder", FakeEncoder)

    def no_training(*args: object, **kwargs: object) -> TextHead:
        raise AssertionError("the text head was retrained although one was given")

    monkeypatch.setattr(trainer, "train_text_head", no_training)
    # The head comes from a model folder with an n-gram decision: the exported model keeps both.
    donor = tmp_path / "donor"
    donor.mkdir()
    shutil.copyfile(runs.straight / "text_head.safetensors", donor / HEAD_FILE)
    bundled_lexical = bundled_model_folder() / LEXICAL_FILE
    shutil.copyfile(bundled_lexical, donor / LEXICAL_FILE)
    config = replace(
        runs.config,
        output=str(tmp_path / "reuse"),
        text_head=str(donor / HEAD_FILE),
        val_data=None,
        steps=2,
    )
    log: list[str] = []
    folder = trainer.train(config, log=log.append)
    assert any(line.startswith("text head loaded from") for line in log)
    given, _ = load_state_dict(runs.straight / "text_head.safetensors")
    exported, _ = load_state_dict(folder / HEAD_FILE)
    torch.testing.assert_close(exported["fc1.weight"], given["fc1.weight"], atol=1e-3, rtol=1e-3)
    assert spec_from_folder(folder).lexical == folder / LEXICAL_FILE
    assert (folder / LEXICAL_FILE).read_bytes() == bundled_lexical.read_bytes()
    # A head trained in the run has no n-gram decision to carry.
    assert spec_from_folder(runs.straight / "model").lexical is None

    seven = tmp_path / "seven.safetensors"
    save_state_dict(seven, TextHead(384, 256, len(TASKS)).state_dict())
    with pytest.raises(ValueError, match="none class"):
        trainer.train(replace(config, output=str(tmp_path / "seven"), text_head=str(seven)), log=log.append)


# ----------------------------------------------------------------------------- config and schedule


def test_config_files_parse() -> None:
    small = TrainConfig.from_file(CONFIGS / "cpu-small.toml")
    assert small.network == NetworkConfig(width=16, enc_blocks=(1, 1, 2, 4), middle_blocks=2, dec_blocks=(1, 1, 1, 1))
    assert all(weight > 0 for weight in small.task_weights.values())
    assert set(small.task_weights) == set(TASKS)
    assert isinstance(small.betas, tuple)
    gpu = TrainConfig.from_file(CONFIGS / "gpu-7d.toml")
    assert gpu.network.text_dim == 256
    assert json.loads(json.dumps(small.to_dict()))["network"]["enc_blocks"] == [1, 1, 2, 4]


def test_config_rejects_unknown_settings_and_reads_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('output = "x"\ndata = []\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match="unknown training settings: learning_rate"):
        TrainConfig.from_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"output": "o", "data": ["d"], "betas": [0.8, 0.99], "network": {"width": 8}}))
    config = TrainConfig.from_file(good)
    assert config.betas == (0.8, 0.99) and config.network.width == 8 and config.steps == 100_000


def test_learning_rate_warmup_then_cosine() -> None:
    config = TrainConfig(output="o", data=[], steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-6)
    rates = [learning_rate(step, config) for step in range(config.steps + 1)]
    warmup, decay = rates[:100], rates[100:]
    assert all(b > a for a, b in itertools.pairwise(warmup)), "warmup is not increasing"
    assert warmup[0] == pytest.approx(1e-5) and warmup[-1] == pytest.approx(1e-3)
    assert all(b <= a for a, b in itertools.pairwise(decay)), "decay is not monotonic"
    assert decay[0] == pytest.approx(1e-3)
    assert rates[550] == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-6)
    assert rates[1000] == pytest.approx(1e-6)
    assert max(rates) <= 1e-3 + 1e-12 and min(rates) >= 1e-6 - 1e-12
    # No jump at the end of warmup.
    assert abs(rates[100] - rates[99]) < 1e-3 * 0.02


def test_learning_rate_follows_the_time_budget() -> None:
    config = TrainConfig(
        output="o", data=[], steps=1_000_000, warmup_steps=0, lr=1e-3, min_lr=0.0, time_limit_minutes=10
    )
    assert budget_used(10, 300.0, config) == pytest.approx(0.5)
    assert budget_used(10, 6000.0, config) == 1.0
    assert learning_rate(10, config, elapsed_s=0.0) == pytest.approx(1e-3)
    assert learning_rate(10, config, elapsed_s=300.0) == pytest.approx(5e-4, rel=1e-4)
    assert learning_rate(10, config, elapsed_s=600.0) == pytest.approx(0.0, abs=1e-12)
    times = np.linspace(0, 700, 50)
    rates = [learning_rate(10, config, elapsed_s=float(t)) for t in times]
    assert all(b <= a for a, b in itertools.pairwise(rates))


def test_ema_and_frequency_loss() -> None:
    model = torch.nn.Linear(3, 2)
    ema = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(1.0)
        ema.weight.zero_()
        ema.bias.zero_()
    update_ema(ema, model, 0.75)
    torch.testing.assert_close(ema.weight, torch.full((2, 3), 0.25))
    update_ema(ema, model, 0.0)
    torch.testing.assert_close(ema.bias, torch.ones(2))

    image = torch.rand(2, 3, 16, 16)
    assert float(frequency_l1(image, image)) == 0.0
    assert float(frequency_l1(image + 0.1, image)) > 0
    fine = image + 0.05 * torch.randn(2, 3, 16, 16)
    assert float(frequency_l1(fine, image)) > 0


# ----------------------------------------------------------------------------- text head and corpus vectors


def _clustered_corpus(per_class: int, split: str, seed: int) -> EncodedCorpus:
    centres = F.normalize(torch.randn(len(CLASS_NAMES), 384, generator=torch.Generator().manual_seed(99)), dim=-1)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(per_class)
    vectors = F.normalize(centres[labels] + 0.06 * torch.randn(len(labels), 384, generator=generator), dim=-1)
    texts = tuple(f"{split} line {i}" for i in range(len(labels)))
    return EncodedCorpus(texts, labels.numpy(), (split,) * len(labels), vectors.numpy())


def test_text_head_learns_separable_classes() -> None:
    train = _clustered_corpus(30, "train", seed=1)
    heldout = _clustered_corpus(10, "heldout", seed=2)
    head = train_text_head(train, embedding_dim=64, epochs=40)
    assert head.fc2.out_features == len(CLASS_NAMES) and head.fc1.out_features == 64
    report = evaluate_text_head(head, heldout)
    assert report.accuracy >= 0.95
    assert report.count == len(heldout.labels) == int(report.confusion.sum())
    assert np.trace(report.confusion) == round(report.accuracy * report.count)
    assert set(report.per_class) == set(CLASS_NAMES)
    markdown = report.to_markdown()
    assert markdown.count("\n") == len(CLASS_NAMES) + 2 and "| none |" in markdown

    untrained = evaluate_text_head(TextHead(384, 64, len(CLASS_NAMES)).eval(), heldout)
    assert untrained.accuracy < 0.6


def test_retraining_the_classifier_keeps_the_embedding_bit_for_bit() -> None:
    """The image network is conditioned on fc1's embeddings: a new class decision must leave them alone."""
    train = _clustered_corpus(30, "train", seed=1)
    heldout = _clustered_corpus(10, "heldout", seed=2)
    torch.manual_seed(5)
    frozen = TextHead(384, 64, len(CLASS_NAMES)).eval()  # a fixed projection, a classifier that knows nothing
    before = {name: tensor.clone() for name, tensor in frozen.state_dict().items()}
    assert evaluate_text_head(frozen, heldout).accuracy < 0.6

    retrained = retrain_classifier(frozen, train, epochs=60)
    assert evaluate_text_head(retrained, heldout).accuracy >= 0.95
    assert torch.equal(retrained.fc1.weight, before["fc1.weight"]) and torch.equal(
        retrained.fc1.bias, before["fc1.bias"]
    )
    assert not torch.equal(retrained.fc2.weight, before["fc2.weight"])
    vectors = torch.from_numpy(heldout.vectors)
    with torch.inference_mode():
        assert torch.equal(retrained(vectors)[0], frozen(vectors)[0])
    # The head passed in is not modified.
    assert all(torch.equal(frozen.state_dict()[name], tensor) for name, tensor in before.items())
    assert retrained.fc1.weight.requires_grad


def test_encode_texts_uses_the_disk_cache(tmp_path: Path) -> None:
    texts = ["remove the noise", "brighten it"]
    encoder = FakeEncoder()
    first = encode_texts(texts, encoder, tmp_path)
    assert first.shape == (2, 384) and first.dtype == np.float32
    assert len(list(tmp_path.glob("vectors-*.npy"))) == 1

    class Refusing(FakeEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise AssertionError("should have come from the cache")

    np.testing.assert_array_equal(encode_texts(texts, Refusing(), tmp_path), first)

    class Other(FakeEncoder):
        identifier = "another-encoder"

    other = Other()
    encode_texts(texts, other, tmp_path)
    assert other.calls == 1 and len(list(tmp_path.glob("vectors-*.npy"))) == 2
    encode_texts([*texts, "dehaze"], encoder, tmp_path)
    assert len(list(tmp_path.glob("vectors-*.npy"))) == 3


def test_encode_corpus_subsets_and_augmentation() -> None:
    corpus = load_corpus()
    encoded = encode_corpus(corpus, FakeEncoder())
    assert encoded.vectors.shape == (len(corpus.lines), 384)
    assert [CLASS_NAMES[i] for i in encoded.labels[:20]] == [line.label for line in corpus.lines[:20]]
    train, heldout = encoded.subset("train"), encoded.subset("heldout")
    assert len(train.texts) + len(heldout.texts) == len(encoded.texts)
    assert set(train.splits) == {"train"} and set(heldout.splits) == {"heldout"}
    assert set(np.unique(heldout.labels)) == set(range(len(CLASS_NAMES)))
    joined = train + heldout
    assert len(joined.texts) == len(encoded.texts) and joined.vectors.shape == encoded.vectors.shape

    small = train.subset("train")
    small = EncodedCorpus(small.texts[:10], small.labels[:10], small.splits[:10], small.vectors[:10])
    variants = augmented(small, FakeEncoder(), copies=3, seed=5)
    assert len(variants.texts) == 30
    np.testing.assert_array_equal(variants.labels, np.repeat(small.labels, 3))
    assert augmented(small, FakeEncoder(), copies=3, seed=5).texts == variants.texts
    assert augmented(small, FakeEncoder(), copies=3, seed=6).texts != variants.texts
    assert sum(v not in small.texts for v in variants.texts) >= 20


def test_augment_text_makes_plausible_variants() -> None:
    rng = random.Random(0)
    text = "Please remove the noise from this photo."
    variants = [augment_text(text, rng) for _ in range(200)]
    assert len(set(variants)) > 20
    lowered = text.lower()
    for variant in variants:
        # Every variant keeps most of the words of the original.
        words = set(lowered.rstrip(".").split())
        kept = sum(word in variant.lower() for word in words)
        assert kept >= len(words) - 3, variant


# ----------------------------------------------------------------------------- patches


def test_patch_sampler_cuts_real_patches(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rows, cols = np.meshgrid(np.arange(50), np.arange(60), indexing="ij")
    coded = np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    Image.fromarray(coded).save(folder / "coded.png")
    Image.fromarray(np.zeros((10, 100, 3), np.uint8)).save(folder / "too-small.png")
    (folder / "notes.txt").write_text("not an image")

    assert [p.name for p in list_images([folder])] == ["coded.png", "too-small.png"]
    sampler = PatchSampler.from_folders([folder], patch_size=16)
    assert len(sampler) == 1  # the 10-px-high image is skipped
    batch = sampler.sample(12, torch.Generator().manual_seed(0))
    assert batch.shape == (12, 3, 16, 16) and batch.dtype == torch.uint8
    for patch in batch:
        assert (patch[2] == 7).all()
        # A patch is a 16x16 window of the image, maybe turned or flipped: 16 rows x 16 columns.
        assert sorted(set(patch[0].flatten().tolist())) == list(range(int(patch[0].min()), int(patch[0].min()) + 16))
        assert sorted(set(patch[1].flatten().tolist())) == list(range(int(patch[1].min()), int(patch[1].min()) + 16))
    again = sampler.sample(12, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
    assert not torch.equal(batch, sampler.sample(12, torch.Generator().manual_seed(1)))
    # Rows of the image run down the patch (0 or 180 degrees) or across it (90 or 270 degrees).
    rows_run_down = [not bool((patch[0][:, 0] == patch[0][0, 0]).all()) for patch in batch]
    assert any(rows_run_down) and not all(rows_run_down), "patches should come both upright and turned"

    as_float = to_float(batch, torch.device("cpu"))
    assert as_float.dtype == torch.float32 and float(as_float.max()) <= 1.0
    assert float(as_float[0, 2, 0, 0]) == pytest.approx(7 / 255)


def test_patch_sampler_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="training data folder not found"):
        list_images([tmp_path / "absent"])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match="at least 32 px"):
        PatchSampler.from_folders([tmp_path], 32)
    grey = Image.fromarray(np.full((20, 30), 200, np.uint8), mode="L")
    grey.save(tmp_path / "grey.png")
    loaded = load_rgb_uint8(tmp_path / "grey.png")
    assert loaded.shape == (3, 20, 30) and int(loaded[1, 5, 5]) == 200


# ----------------------------------------------------------------------------- evaluation metrics


def test_psnr_known_values() -> None:
    a = torch.full((1, 3, 32, 32), 0.5)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-3)
    grey = torch.full((1, 3, 128, 128), 0.5)
    noise = torch.randn(grey.shape, generator=torch.Generator().manual_seed(0)) * (10 / 255)
    assert psnr(grey + noise, grey) == pytest.approx(20 * math.log10(255 / 10), abs=0.1)
    # Values are clamped to [0, 1] before comparing.
    assert psnr(torch.full((1, 3, 8, 8), 1.5), torch.ones(1, 3, 8, 8)) == math.inf


def test_ssim_known_values() -> None:
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-5)
    # Two flat images: only the luminance term is left, (2ab + c1) / (a^2 + b^2 + c1). The variances are
    # computed as E[x^2] - E[x]^2 in float32, which leaves an error of a few 1e-4 next to c2.
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim(torch.full((1, 3, 24, 24), 0.5), torch.full((1, 3, 24, 24), 0.6)) == pytest.approx(expected, abs=5e-4)
    noisy = [(image + s * torch.randn(image.shape, generator=torch.Generator().manual_seed(2))) for s in (0.02, 0.1)]
    scores = [ssim(n, image) for n in noisy]
    assert 1.0 > scores[0] > scores[1] > 0
    assert ssim(noisy[0], image) == pytest.approx(ssim(image, noisy[0]), abs=1e-6)
    assert ssim(image, 1 - image) < 0


def test_gaussian_eval_noise_has_the_named_sigma() -> None:
    clean = torch.full((1, 3, 64, 64), 0.5)
    by_key = {setting.key: setting for setting in EVAL_SETTINGS}
    for sigma in (15, 25, 50):
        noisy = degrade_for_setting(clean, by_key[f"denoise_{sigma}"], seed=3)
        assert float((noisy - clean).std()) * 255 == pytest.approx(sigma, rel=0.06)
    assert torch.equal(
        degrade_for_setting(clean, by_key["deblur"], seed=4), degrade_for_setting(clean, by_key["deblur"], seed=4)
    )


def test_evaluate_reports_and_writes_a_contact_sheet(tmp_path: Path) -> None:
    data = tmp_path / "eval"
    write_images(data / "mcmaster", 2, 40, 48, seed=3, low=0.25, high=0.75)
    write_images(data / "rain100h" / "input", 1, 40, 48, seed=4)
    write_images(data / "rain100h" / "target", 1, 40, 48, seed=5)
    assert resolve_eval_data(data) == data
    with pytest.raises(FileNotFoundError, match="evaluation data not found"):
        resolve_eval_data(tmp_path / "nothing")

    seen: list[str] = []
    messages: list[str] = []

    def identity(degraded: torch.Tensor, task: str) -> torch.Tensor:
        assert degraded.shape == (1, 3, 40, 48)
        seen.append(task)
        return degraded

    sheet = tmp_path / "sheet.png"
    rows = evaluate(identity, data, contact_sheet=sheet, progress=messages.append)
    assert [row.setting.key for row in rows] == [setting.key for setting in EVAL_SETTINGS]
    assert len(messages) == len(rows)
    assert seen.count("derain") == 2 + 1  # synthetic on 2 images, then the real pair
    by_key = {row.setting.key: row for row in rows}
    assert by_key["derain_rain100h"].images == 1 and by_key["denoise_25"].images == 2
    for row in rows:
        # Restoring with the identity gains nothing and the scores are those of the input.
        assert row.gain == pytest.approx(0.0, abs=1e-9)
        assert row.output_ssim == pytest.approx(row.input_ssim, abs=1e-9)
        assert 0 < row.input_ssim < 1
    noise_psnr = [by_key[f"denoise_{sigma}"].input_psnr for sigma in (15, 25, 50)]
    assert noise_psnr[0] == pytest.approx(20 * math.log10(255 / 15), abs=0.5)
    assert noise_psnr[1] == pytest.approx(20 * math.log10(255 / 25), abs=0.5)
    assert noise_psnr[0] > noise_psnr[1] > noise_psnr[2]
    assert by_key["upscale_4"].input_psnr < by_key["upscale_2"].input_psnr
    assert by_key["deblur"].input_psnr < by_key["deblur_mild"].input_psnr

    with Image.open(sheet) as image:
        # One row per setting, each 200 px high with degraded | restored | clean at 48 * 200 / 40 px wide.
        assert image.size == (3 * 240, 200 * len(rows))

    markdown = rows_to_markdown(rows, title="## tiny")
    assert markdown.startswith("## tiny")
    assert markdown.count("\n| ") == len(rows) + 2  # separator, rows and the mean
    assert "+0.00" in markdown


def test_evaluate_limit_and_missing_rain(tmp_path: Path) -> None:
    data = write_images(tmp_path / "mcmaster", 3, 32, 32, seed=6).parent
    rows = evaluate(lambda degraded, task: degraded.clamp(0, 1) * 0, data, limit=1)
    assert "derain_rain100h" not in [row.setting.key for row in rows]
    assert all(row.images == 1 for row in rows)
    assert all(row.output_psnr < row.input_psnr for row in rows)


def test_evaluate_can_be_limited_to_some_settings(tmp_path: Path) -> None:
    assert select_settings([]) == EVAL_SETTINGS
    assert [s.key for s in select_settings(["upscale", "deblur"])] == [
        "deblur",
        "deblur_mild",
        "upscale_2",
        "upscale_4",
    ]
    assert [s.key for s in select_settings(["deblur_mild"])] == ["deblur_mild"]
    with pytest.raises(ValueError, match="unknown evaluation setting sharpen"):
        select_settings(["sharpen"])
    data = write_images(tmp_path / "mcmaster", 1, 32, 32, seed=7).parent
    seen: list[str] = []
    rows = evaluate(lambda degraded, task: seen.append(task) or degraded, data, settings=select_settings(["dehaze"]))
    assert [row.setting.key for row in rows] == ["dehaze"] and seen == ["dehaze"]


def test_recorded_gains_tell_the_chat_which_tasks_the_model_barely_does(tmp_path: Path) -> None:
    from instructir_desktop.model.registry import record_evaluation, spec_from_folder, weak_tasks
    from instructir_desktop.training.evaluation import EvalRow, gains_by_task

    by_key = {setting.key: setting for setting in EVAL_SETTINGS}

    def row(key: str, before: float, after: float) -> EvalRow:
        return EvalRow(by_key[key], 18, before, 0.5, after, 0.6, 1.0)

    rows = [row("denoise_15", 25.1, 28.7), row("denoise_50", 15.4, 19.0), row("deblur", 23.3, 23.34)]
    rows += [row("upscale_2", 32.0, 31.8), row("upscale_4", 26.7, 26.8)]
    gains = gains_by_task(rows)
    assert gains == {"denoise": 3.6, "deblur": 0.04, "upscale": -0.2}

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "image.safetensors").write_bytes(b"")
    (folder / "model.json").write_text('{"id": "m", "name": "M", "evaluation": {"gain_db": {"dehaze": 8.2}}}')
    record_evaluation(folder, gains, "instructir-desktop evaluate")
    spec = spec_from_folder(folder)
    assert spec.info["evaluation"]["gain_db"]["dehaze"] == 8.2  # kept: merged, not replaced
    assert weak_tasks(spec) == {"deblur": 0.04, "upscale": -0.2}

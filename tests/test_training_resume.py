"""Training that outlives a machine: resume points, data-parallel processes, transplanted networks,
task sampling that follows the remaining gaps, and the PSNR finishing loss."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import spec_from_folder
from instructir_desktop.model.tasks import TASKS
from instructir_desktop.training import trainer
from instructir_desktop.training.resume import ResumePoint
from instructir_desktop.training.trainer import GAP_FLOOR_DB, TrainConfig, format_duration, gap_weights, image_loss
from instructir_desktop.training.transplant import transplant_state
from tests.test_training import FakeEncoder, write_images

pytestmark = pytest.mark.usefixtures("single_torch_thread")

NETWORK = NetworkConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))


def _config(tmp_path: Path, name: str, steps: int) -> TrainConfig:
    data = write_images(tmp_path / "data", 3, 64, 72, seed=0)
    return replace(
        trainer.tiny_config(str(tmp_path / name), [str(data)], steps=steps),
        network=NETWORK,
        device="cpu",
        threads=1,
        log_every=5,
        text_head=None,
    )


@pytest.fixture
def fake_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "SentenceTransformerEncoder", FakeEncoder)
    monkeypatch.setattr(trainer, "train_text_head", _quick_head)


def _quick_head(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    from instructir_desktop.training.text_head import train_text_head

    return train_text_head(*args, **{**kwargs, "epochs": 2})  # type: ignore[arg-type]


def _steps(output: Path) -> list[int]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [record["step"] for record in map(json.loads, lines) if "loss" in record]


def test_a_resume_point_continues_on_a_fresh_machine(tmp_path: Path, fake_text: None) -> None:
    point_file = tmp_path / "committed" / "resume.safetensors"
    first = replace(_config(tmp_path, "first", steps=20), resume_point=str(point_file))
    log: list[str] = []
    trainer.train(first, log=log.append)
    assert any(line.startswith(f"resume point written to {point_file}") for line in log)

    point = ResumePoint.load(point_file)
    assert point.step == 20 and point.seed == first.seed
    assert point.config["network"]["width"] == NETWORK.width
    assert set(point.model) == set(InstructIRNet(NETWORK).state_dict())
    # fp16 on disk: small enough to commit, and the EMA differs from the raw weights.
    assert point_file.stat().st_size < 2 * 2 * sum(v.numel() for v in point.model.values()) + 65536
    assert any(not torch.equal(point.model[k], point.ema[k]) for k in point.model)

    # Another machine: a new output folder (no checkpoint.pt), the committed point, more steps.
    second = replace(_config(tmp_path, "second", steps=30), resume_from=str(point_file), text_head=None)
    log = []
    folder = trainer.train(second, log=log.append)
    assert f"continuing from resume point {point_file} at step 20" in log
    assert _steps(tmp_path / "second") == [25, 30]
    assert spec_from_folder(folder).info["training"]["steps"] == 30


def test_resume_point_refuses_other_files(tmp_path: Path) -> None:
    from instructir_desktop.model.weights import save_state_dict

    other = save_state_dict(tmp_path / "weights.safetensors", {"a": torch.zeros(2)})
    with pytest.raises(ValueError, match="not a training resume point"):
        ResumePoint.load(other)


@pytest.mark.slow
def test_two_processes_train_one_model_together(tmp_path: Path, fake_text: None) -> None:
    config = replace(_config(tmp_path, "parallel", steps=10), processes=2, threads=2, batch_size=4)
    folder = trainer.train(config)
    assert _steps(tmp_path / "parallel") == [5, 10]
    checkpoint = torch.load(tmp_path / "parallel" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert int(checkpoint["step"]) == 10
    # Each process keeps its own data order, to continue where it stopped.
    assert (tmp_path / "parallel" / "rng-0.pt").is_file() and (tmp_path / "parallel" / "rng-1.pt").is_file()
    trained = spec_from_folder(folder)
    assert trained.info["training"]["steps"] == 10


def test_data_parallel_needs_a_batch_that_splits(tmp_path: Path, fake_text: None) -> None:
    config = replace(_config(tmp_path, "odd", steps=2), processes=2, batch_size=5)
    with pytest.raises(ValueError, match="does not split over 2 processes"):
        trainer.train(config)


def test_transplant_moves_the_deeper_levels_into_a_stem_network() -> None:
    source_config = NetworkConfig(width=8, enc_blocks=(1, 1, 2), middle_blocks=1, dec_blocks=(1, 1, 1), text_dim=16)
    target_config = NetworkConfig(width=16, enc_blocks=(2, 2), middle_blocks=2, dec_blocks=(1, 1), text_dim=16, stem=2)
    source = InstructIRNet(source_config).state_dict()
    for value in source.values():
        value.normal_()
    moved = transplant_state(source, source_config, target_config)
    # Source level 1 becomes target level 0; the decoders keep their (bottom-up) numbering.
    torch.testing.assert_close(moved["encoders.0.0.conv1.weight"], source["encoders.1.0.conv1.weight"])
    torch.testing.assert_close(moved["encoders.1.1.conv2.weight"], source["encoders.2.1.conv2.weight"])
    torch.testing.assert_close(moved["downs.0.weight"], source["downs.1.weight"])
    torch.testing.assert_close(moved["enc_cond.1.fc.weight"], source["enc_cond.2.fc.weight"])
    torch.testing.assert_close(moved["decoders.1.0.conv4.weight"], source["decoders.1.0.conv4.weight"])
    torch.testing.assert_close(moved["dec_cond.0.gamma"], source["dec_cond.0.gamma"])
    torch.testing.assert_close(moved["middle_blks.0.beta"], source["middle_blks.0.beta"])

    target = InstructIRNet(target_config)
    missing = target.load_state_dict(moved, strict=False).missing_keys
    # New: the stem convolutions, the second block of the target's first level and the second
    # middle block. Everything else came over.
    assert {key.split(".")[0] for key in missing} == {"intro", "ending", "encoders", "middle_blks"}
    assert all(key.startswith(("intro.", "ending.", "encoders.0.1.", "middle_blks.1.")) for key in missing)
    assert not any(key.startswith("decoders.2") or key.startswith("dec_cond.2") for key in moved)


def test_growing_a_plain_network_starts_from_the_same_function() -> None:
    small = NetworkConfig(width=8, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1), text_dim=16)
    grown = NetworkConfig(width=8, enc_blocks=(1, 2, 3), middle_blocks=3, dec_blocks=(1, 2, 2), text_dim=16)
    source = InstructIRNet(small)
    with torch.no_grad():
        for value in source.parameters():
            value.normal_(0, 0.2)
    target = InstructIRNet(grown)
    missing = target.load_state_dict(transplant_state(source.state_dict(), small, grown), strict=False).missing_keys
    assert missing and all(key.split(".")[0] in ("encoders", "decoders", "middle_blks") for key in missing)
    image, embedding = torch.rand(1, 3, 32, 40), torch.randn(1, 16)
    with torch.no_grad():
        before = source(image, embedding)
        torch.testing.assert_close(target(image, embedding), before)
        assert (before - image).abs().mean() > 0.05  # the source really does something


def test_transplant_refuses_shapes_that_do_not_line_up() -> None:
    source_config = NetworkConfig(width=8, enc_blocks=(1, 1, 2), middle_blocks=1, dec_blocks=(1, 1, 1), text_dim=16)
    source = InstructIRNet(source_config).state_dict()
    wrong_width = NetworkConfig(width=24, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), text_dim=16, stem=2)
    with pytest.raises(ValueError, match="needs width 16"):
        transplant_state(source, source_config, wrong_width)
    wrong_levels = NetworkConfig(
        width=16, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1), text_dim=16, stem=2
    )
    with pytest.raises(ValueError, match="needs 2 levels"):
        transplant_state(source, source_config, wrong_levels)


def test_task_sampling_follows_the_remaining_gap() -> None:
    config = TrainConfig(output="o", data=[], task_goals={"denoise": 8.0, "deblur": 2.5, "lowlight": 10.0})
    scores: dict[str, float] = {}
    for task in TASKS:
        scores[f"{task}_input"] = 20.0
        scores[task] = 21.0
    scores["denoise"] = 25.3  # +5.3 of +8: 2.7 dB to go
    scores["deblur"] = 20.4  # +0.4 of +2.5: 2.1 dB to go
    scores["lowlight"] = 33.0  # past its goal: the floor
    weights = dict(zip(TASKS, gap_weights(config, scores).tolist(), strict=True))
    assert weights["denoise"] == pytest.approx(2.7, abs=1e-5)
    assert weights["deblur"] == pytest.approx(2.1, abs=1e-5)
    assert weights["lowlight"] == pytest.approx(GAP_FLOOR_DB)
    assert weights["dehaze"] == pytest.approx(GAP_FLOOR_DB)  # no goal given


def test_config_refuses_unknown_goals_and_losses() -> None:
    with pytest.raises(ValueError, match="unknown tasks: sharpen"):
        TrainConfig(output="o", data=[], task_goals={"sharpen": 3.0})
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(output="o", data=[], loss="l2")


def test_psnr_loss_is_minus_the_psnr() -> None:
    target = torch.full((2, 3, 8, 8), 0.5)
    restored = target.clone()
    restored[0] += 0.1  # MSE 0.01: 20 dB
    restored[1] += 0.01  # MSE 1e-4: 40 dB
    config = TrainConfig(output="o", data=[], loss="psnr")
    assert float(image_loss(restored, target, config)) == pytest.approx(-(20 + 40) / 2, abs=1e-3)
    l1 = TrainConfig(output="o", data=[], fft_loss_weight=0.0)
    assert float(image_loss(restored, target, l1)) == pytest.approx((0.1 + 0.01) / 2, abs=1e-6)


def test_durations_read_as_hours_and_minutes() -> None:
    assert format_duration(3 * 3600 + 7 * 60 + 5) == "3h07m"
    assert format_duration(95) == "1m35s"
    assert format_duration(None) == "?"
    assert format_duration(math.inf) == "?"

"""The image-model trainer: all tasks mixed, conditioned on embeddings of corpus instructions.

``instructir-desktop train --config FILE`` runs :func:`train`. Degradations are synthesised on the
training device from clean patches, so a GPU never waits on CPU-side image processing; only the
uint8 crops travel. Training stops at ``steps`` or ``time_limit_minutes`` and can be resumed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import save_model_folder
from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS, CLASS_NAMES, NONE_CLASS, TASKS
from instructir_desktop.model.text import SentenceTransformerEncoder, TextHead
from instructir_desktop.model.weights import load_state_dict, save_state_dict
from instructir_desktop.training.corpus import load_corpus
from instructir_desktop.training.degradations import degrade, degrade_mixed
from instructir_desktop.training.evaluation import psnr
from instructir_desktop.training.patches import PatchSampler, list_images, load_rgb_uint8, to_float
from instructir_desktop.training.text_data import augmented, encode_corpus
from instructir_desktop.training.text_head import evaluate_text_head, train_text_head

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    output: str
    data: list[str]
    network: NetworkConfig = field(default_factory=NetworkConfig)
    val_data: str | None = None
    text_head: str | None = None  # a trained head to reuse; otherwise one is trained first
    encoder: str | None = None  # sentence-transformers folder; None = the packaged default
    init_weights: str | None = None  # start from these image weights (same config)
    model_id: str = "instructir-desktop"
    model_name: str = "InstructIR Desktop"
    patch_size: int = 128
    batch_size: int = 8
    steps: int = 100_000
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.9)
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    fft_loss_weight: float = 0.05
    none_fraction: float = 0.04  # unrelated instruction -> learn to leave the image alone
    task_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TASKS, 1.0))
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch's default
    channels_last: bool = True
    log_every: int = 50
    checkpoint_every: int = 1000
    validate_every: int = 2000
    time_limit_minutes: float = 0.0  # 0 = no limit

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainConfig:
        file = Path(path)
        with file.open("rb") as handle:
            raw = tomllib.load(handle) if file.suffix == ".toml" else json.load(handle)
        network = NetworkConfig.from_dict(raw.pop("network", {}))
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{file.name}: unknown training settings: {', '.join(sorted(unknown))}")
        if "betas" in raw:
            raw["betas"] = tuple(raw["betas"])
        # Paths are taken as given: relative ones resolve against the working directory.
        return cls(network=network, **raw)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["network"] = self.network.to_dict()
        return data


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def budget_used(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """Fraction of the training budget spent: steps or wall-clock time, whichever runs out first.

    Driving the cosine schedule by this lets a time-limited run still anneal to ``min_lr``.
    """
    by_steps = step / max(1, config.steps)
    by_time = elapsed_s / (config.time_limit_minutes * 60) if config.time_limit_minutes else 0.0
    return min(1.0, max(by_steps, by_time))


def learning_rate(step: int, config: TrainConfig, elapsed_s: float = 0.0) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    warmup_share = config.warmup_steps / max(1, config.steps)
    progress = max(0.0, (budget_used(step, elapsed_s, config) - warmup_share) / max(1e-9, 1 - warmup_share))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def frequency_l1(output: Tensor, target: Tensor) -> Tensor:
    """L1 on the Fourier coefficients: penalises lost fine detail that plain L1 shrugs off."""
    spectrum = torch.fft.rfft2((output - target).float(), norm="ortho")
    return torch.view_as_real(spectrum).abs().mean()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param.detach(), 1 - decay)


@dataclass
class ValidationSet:
    clean: Tensor  # (N, 3, S, S) float on device
    degraded: dict[str, Tensor]
    embeddings: dict[str, Tensor]  # task -> (1, text_dim)


def build_validation_set(
    folder: str,
    head: TextHead,
    encoder: SentenceTransformerEncoder,
    device: torch.device,
    crop: int = 192,
    count: int = 6,
) -> ValidationSet:
    # Images smaller than the crop cannot give a same-size crop; they are skipped.
    images = [image for p in list_images([folder]) if min((image := load_rgb_uint8(p)).shape[1:]) >= crop][:count]
    if not images:
        raise ValueError(f"{folder}: no validation image is at least {crop}×{crop} pixels")
    crops = []
    for image in images:
        top = (image.shape[1] - crop) // 2
        left = (image.shape[2] - crop) // 2
        crops.append(image[:, top : top + crop, left : left + crop])
    clean = to_float(torch.stack(crops), device)
    generator = torch.Generator(device=device).manual_seed(1234)
    degraded = {task: degrade(clean, task, generator, 0.5) for task in TASKS}
    vectors = torch.from_numpy(encoder.encode([CANONICAL_INSTRUCTIONS[t] for t in TASKS]))
    with torch.no_grad():
        embeddings, _ = head(vectors)
    return ValidationSet(clean, degraded, {t: embeddings[i : i + 1].to(device) for i, t in enumerate(TASKS)})


@torch.no_grad()
def validate(model: nn.Module, data: ValidationSet) -> dict[str, float]:
    model.eval()
    scores = {}
    for task in TASKS:
        embedding = data.embeddings[task].expand(data.clean.shape[0], -1)
        restored = model(data.degraded[task], embedding).clamp(0, 1)
        scores[task] = psnr(restored, data.clean)
        scores[f"{task}_input"] = psnr(data.degraded[task], data.clean)
    return scores


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, *_: object) -> None:
        self.requested = True


def prepare_text(config: TrainConfig, log: Log) -> tuple[TextHead, SentenceTransformerEncoder, dict[str, Tensor]]:
    """Load or train the text head; return it with per-class banks of training-line embeddings."""
    output = Path(config.output)
    encoder = SentenceTransformerEncoder(config.encoder)
    corpus = load_corpus()
    encoded = encode_corpus(corpus, encoder, output / "cache")
    train_split = encoded.subset("train")
    if config.text_head:
        head = TextHead.from_state_dict(load_state_dict(config.text_head)[0])
        log(f"text head loaded from {config.text_head}")
    else:
        with_variants = train_split + augmented(train_split, encoder, seed=config.seed, cache_dir=output / "cache")
        head = train_text_head(with_variants, embedding_dim=config.network.text_dim, seed=config.seed)
        report = evaluate_text_head(head, encoded.subset("heldout"))
        (output / "text_head_report.md").write_text(report.to_markdown() + "\n")
        save_state_dict(output / "text_head.safetensors", head.state_dict(), {"classes": list(CLASS_NAMES)}, None)
        log(f"text head trained: held-out accuracy {report.accuracy * 100:.1f} %")
    if head.fc2.out_features != len(CLASS_NAMES):
        raise ValueError("training needs a text head with the none class (8 outputs)")
    with torch.no_grad():
        embeddings, _ = head(torch.from_numpy(train_split.vectors))
    banks = {name: embeddings[torch.from_numpy(train_split.labels == i)] for i, name in enumerate(CLASS_NAMES)}
    return head, encoder, banks


def train(config: TrainConfig, log: Log = print) -> Path:
    """Train (or resume) and export the EMA model to ``<output>/model``; returns that folder."""
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)

    head, encoder, banks = prepare_text(config, log)
    banks = {name: bank.to(device) for name, bank in banks.items()}
    sampler = PatchSampler.from_folders(config.data, config.patch_size)
    log(f"{len(sampler)} training images, device {device}")
    validation = build_validation_set(config.val_data, head, encoder, device) if config.val_data else None

    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = InstructIRNet(config.network).to(device)
    model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
    if config.init_weights:
        model.load_state_dict(load_state_dict(config.init_weights)[0], strict=True)
        log(f"initialised from {config.init_weights}")
    ema = copy.deepcopy(model).eval()
    for param in ema.parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    cpu_generator = torch.Generator().manual_seed(config.seed)
    device_generator = torch.Generator(device=device).manual_seed(config.seed + 1)

    checkpoint_path = output / "checkpoint.pt"
    step = 0
    elapsed_before = 0.0  # training seconds spent in earlier runs of a resumed training
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        cpu_generator.set_state(state["cpu_rng"])
        try:
            device_generator.set_state(state["device_rng"])
        except (RuntimeError, KeyError):
            log("device random state not restored (checkpoint from another device); degradations reseeded")
        step = int(state["step"])
        elapsed_before = float(state.get("elapsed_s", torch.tensor(0.0)))
        log(f"resumed at step {step}")

    def save_checkpoint() -> None:
        state = {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "cpu_rng": cpu_generator.get_state(),
            "device_rng": device_generator.get_state().cpu(),
            "step": torch.tensor(step),
            "elapsed_s": torch.tensor(elapsed()),
        }
        temporary = checkpoint_path.with_suffix(".partial")
        torch.save(state, temporary)
        os.replace(temporary, checkpoint_path)

    started = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    stop = _StopFlag()
    previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    task_weights = torch.tensor([config.task_weights.get(t, 0.0) for t in TASKS], dtype=torch.float)
    autocast = device.type == "cuda"
    window_loss, window_patches, window_start = 0.0, 0, time.monotonic()
    metrics_file = (output / "metrics.jsonl").open("a")
    try:
        model.train()
        while step < config.steps and not stop.requested:
            if budget_used(step, elapsed(), config) >= 1.0:
                log("training budget reached")
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config, elapsed())
            clean = to_float(sampler.sample(config.batch_size, cpu_generator), device)
            task_index = torch.multinomial(task_weights, config.batch_size, replacement=True, generator=cpu_generator)
            degraded = degrade_mixed(clean, task_index.to(device), device_generator)
            labels = [TASKS[i] for i in task_index.tolist()]
            unrelated = torch.rand(config.batch_size, generator=cpu_generator) < config.none_fraction
            target = clean.clone()
            for i in unrelated.nonzero(as_tuple=True)[0].tolist():
                labels[i] = NONE_CLASS
                target[i] = degraded[i]
            embedding = torch.stack(
                [banks[label][int(torch.randint(len(banks[label]), (1,), generator=cpu_generator))] for label in labels]
            )
            degraded = degraded.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                restored = model(degraded, embedding)
            loss = F.l1_loss(restored.float(), target) + config.fft_loss_weight * frequency_l1(restored, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            update_ema(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
            step += 1
            window_loss += loss.item()
            window_patches += config.batch_size
            if step % config.log_every == 0:
                window_seconds = time.monotonic() - window_start
                record = {
                    "step": step,
                    "loss": window_loss / config.log_every,
                    "lr": optimizer.param_groups[0]["lr"],
                    "patches_per_s": window_patches / max(window_seconds, 1e-9),
                    "elapsed_min": elapsed() / 60,
                }
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                log(
                    f"step {step}/{config.steps} loss {record['loss']:.4f} lr {record['lr']:.2e} "
                    f"{record['patches_per_s']:.1f} patches/s"
                )
                window_loss, window_patches, window_start = 0.0, 0, time.monotonic()
            if step % config.checkpoint_every == 0:
                save_checkpoint()
                export(ema, head, config, output / "model", step)
            if validation is not None and step % config.validate_every == 0:
                scores = validate(ema, validation)
                metrics_file.write(json.dumps({"step": step, "validation": scores}) + "\n")
                metrics_file.flush()
                log("validation " + " ".join(f"{t} {scores[t]:.2f}/{scores[t + '_input']:.2f}" for t in TASKS))
                model.train()
    finally:
        metrics_file.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    save_checkpoint()
    return export(ema, head, config, output / "model", step)


def export(ema: nn.Module, head: TextHead, config: TrainConfig, folder: Path, step: int) -> Path:
    assert isinstance(ema, InstructIRNet)
    return save_model_folder(
        folder,
        image_state=ema.state_dict(),
        head_state=head.state_dict(),
        network=config.network,
        model_id=config.model_id,
        name=config.model_name,
        encoder=config.encoder,
        extra={"training": {"steps": step, "patch_size": config.patch_size, "batch_size": config.batch_size}},
    )


def tiny_config(output: str, data: list[str], steps: int = 30) -> TrainConfig:
    """A configuration small enough to train for a few steps in a test."""
    return replace(
        TrainConfig(output=output, data=data),
        network=NetworkConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), text_dim=256),
        patch_size=32,
        batch_size=4,
        steps=steps,
        warmup_steps=2,
        lr=2e-3,
        log_every=10,
        checkpoint_every=10_000,
        validate_every=10_000,
    )


def summarise_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Last validation scores and mean throughput from a metrics.jsonl file."""
    throughput, last_validation = [], None
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if "patches_per_s" in record:
            throughput.append(record["patches_per_s"])
        if "validation" in record:
            last_validation = record
    return {"patches_per_s": float(np.median(throughput)) if throughput else None, "validation": last_validation}

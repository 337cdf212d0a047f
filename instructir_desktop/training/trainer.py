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
import shutil
import signal
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructir_desktop.model.network import InstructIRNet, NetworkConfig, detect_config
from instructir_desktop.model.registry import LEXICAL_FILE, save_model_folder
from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS, CLASS_NAMES, NONE_CLASS, TASKS
from instructir_desktop.model.text import SentenceTransformerEncoder, TextHead
from instructir_desktop.model.weights import load_state_dict, save_state_dict
from instructir_desktop.training.corpus import load_corpus
from instructir_desktop.training.degradations import degrade, degrade_mixed
from instructir_desktop.training.evaluation import psnr
from instructir_desktop.training.patches import PatchSampler, list_images, load_rgb_uint8, to_float
from instructir_desktop.training.resume import ResumePoint
from instructir_desktop.training.text_data import augmented, encode_corpus
from instructir_desktop.training.text_head import evaluate_text_head, train_text_head
from instructir_desktop.training.transplant import transplant_state

Log = Callable[[str], None]

# A task that has reached its goal still gets this much sampling weight (as if this many dB short).
GAP_FLOOR_DB = 0.5
LOSSES = ("l1", "psnr")


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
    # bfloat16 autocast: on a CPU with AVX512-BF16/AMX it measures ~1.25x faster (benchmarks/bench_training.py).
    bf16: bool = False
    processes: int = 1  # data-parallel processes on the CPU; each takes threads // processes threads
    fused_optimizer: bool = False
    loss: str = "l1"  # "l1" (+ frequency L1), or "psnr" for a short finish
    # Goals (validation dB over the input) per task: when given, sampling follows the remaining gaps.
    task_goals: dict[str, float] = field(default_factory=dict)
    transplant_from: str | None = None  # plain-network weights to carry into a stem network
    resume_from: str | None = None  # a resume point to continue when the output holds no checkpoint
    resume_point: str | None = None  # where to write this run's resume point when it stops
    resume_warmup_steps: int = 200
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

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        unknown = set(self.task_goals) - set(TASKS)
        if unknown:
            raise ValueError(f"task_goals names unknown tasks: {', '.join(sorted(unknown))}")

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
    embeddings: dict[str, Tensor],
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
    return ValidationSet(clean, degraded, {t: embeddings[t].to(device) for t in TASKS})


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


@dataclass
class TextBundle:
    """What the image training needs from the text side, prepared once (in the parent process)."""

    head_state: dict[str, Tensor]
    banks: dict[str, Tensor]  # class name -> (lines, text_dim) embeddings of training lines
    validation_embeddings: dict[str, Tensor] | None  # task -> (1, text_dim), for CANONICAL_INSTRUCTIONS


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


def _prepare_bundle(config: TrainConfig, log: Log) -> TextBundle:
    head, encoder, banks = prepare_text(config, log)
    validation_embeddings = None
    if config.val_data:
        vectors = torch.from_numpy(encoder.encode([CANONICAL_INSTRUCTIONS[t] for t in TASKS]))
        with torch.no_grad():
            embeddings, _ = head(vectors)
        validation_embeddings = {t: embeddings[i : i + 1].clone() for i, t in enumerate(TASKS)}
    return TextBundle({k: v.detach().clone() for k, v in head.state_dict().items()}, banks, validation_embeddings)


def train(config: TrainConfig, log: Log = print) -> Path:
    """Train (or resume) and export the EMA model to ``<output>/model``; returns that folder.

    With ``processes > 1`` on the CPU the batch is split over that many processes that average
    their gradients (data parallel); the first of them logs, validates and saves.
    """
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    bundle = _prepare_bundle(config, log)
    if config.processes <= 1 or pick_device(config.device).type != "cpu":
        return _Run(config, bundle, log).run()
    if config.batch_size % config.processes:
        raise ValueError(f"batch_size {config.batch_size} does not split over {config.processes} processes")
    from instructir_desktop.training.parallel import run_data_parallel

    return run_data_parallel(config, bundle)


class _Run:
    """One process's training loop; rank 0 of a data-parallel group (or the only process) reports."""

    def __init__(self, config: TrainConfig, bundle: TextBundle, log: Log, rank: int = 0, world: int = 1) -> None:
        self.config, self.bundle, self.log, self.rank, self.world = config, bundle, log, rank, world
        self.output = Path(config.output)
        self.device = pick_device(config.device)
        self.step = 0
        self.elapsed_before = 0.0
        self.started = time.monotonic()
        self.rewarm_from: int | None = None  # step at which a resume point restarted the optimizer

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def lr(self, elapsed_s: float) -> float:
        rate = learning_rate(self.step, self.config, elapsed_s)
        if self.rewarm_from is not None:
            # Fresh optimizer moments after a resume point: ramp up again over a short warm-up.
            ramp = (self.step - self.rewarm_from + 1) / max(1, self.config.resume_warmup_steps)
            rate *= min(1.0, ramp)
        return rate

    def run(self) -> Path:
        config, device = self.config, self.device
        threads = config.threads // self.world if config.threads else 0
        if threads:
            torch.set_num_threads(max(1, threads))
        torch.manual_seed(config.seed)
        head = TextHead.from_state_dict(self.bundle.head_state)
        banks = {name: bank.to(device) for name, bank in self.bundle.banks.items()}
        sampler = PatchSampler.from_folders(config.data, config.patch_size)
        if self.leader:
            self.log(f"{len(sampler)} training images, device {device}, {self.world} process(es)")
        validation = None
        if self.leader and config.val_data and self.bundle.validation_embeddings is not None:
            validation = build_validation_set(config.val_data, self.bundle.validation_embeddings, device)

        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = InstructIRNet(config.network).to(device)
        model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
        for param in model.parameters():
            # channels_last also restrides (1, C, 1, 1) scales and 1x1 kernels, whose gradients then
            # disagree with data-parallel's flat buckets; their layout does not matter for speed.
            # contiguous() would keep a (1, C, 1, 1) tensor's channels-last strides (it already
            # counts as contiguous), so the layout is rebuilt with a clone.
            if param.dim() == 4 and param.shape[-2:] == (1, 1):
                param.data = param.data.clone(memory_format=torch.contiguous_format)
        self._initialise(model)
        ema = copy.deepcopy(model).eval()
        for param in ema.parameters():
            param.requires_grad_(False)
        trained = self._wrap(model)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            fused=config.fused_optimizer or None,
        )
        seed = config.seed * 1009 + self.rank
        cpu_generator = torch.Generator().manual_seed(seed)
        device_generator = torch.Generator(device=device).manual_seed(seed + 1)
        checkpoint_path = self.output / "checkpoint.pt"
        if checkpoint_path.is_file():
            self._load_checkpoint(checkpoint_path, model, ema, optimizer, cpu_generator, device_generator)
        elif config.resume_from:
            point = ResumePoint.load(config.resume_from)
            model.load_state_dict(point.model, strict=True)
            ema.load_state_dict(point.ema, strict=True)
            self.step, self.elapsed_before = point.step, point.elapsed_s
            self.rewarm_from = point.step
            # The data order of a continued run follows the resume point's seed and step.
            cpu_generator.manual_seed(point.seed * 1_000_003 + point.step * 1009 + self.rank)
            device_generator.manual_seed(point.seed * 1_000_003 + point.step * 1009 + self.rank + 1)
            if self.leader:
                self.log(f"continuing from resume point {config.resume_from} at step {point.step}")

        def save_checkpoint() -> None:
            self._save_checkpoint(checkpoint_path, model, ema, optimizer, cpu_generator, device_generator)

        stop = _StopFlag()
        previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        task_weights = torch.tensor([config.task_weights.get(t, 0.0) for t in TASKS], dtype=torch.float)
        autocast = device.type == "cuda" or config.bf16
        metrics_file = (self.output / "metrics.jsonl").open("a") if self.leader else None
        meter = _Meter(self, config)
        try:
            model.train()
            while self.step < config.steps:
                elapsed_s, stopping = self._agree(self.elapsed(), stop.requested)
                if stopping:
                    break
                if budget_used(self.step, elapsed_s, config) >= 1.0:
                    if self.leader:
                        self.log("training budget reached")
                    break
                for group in optimizer.param_groups:
                    group["lr"] = self.lr(elapsed_s)
                degraded, target, embedding = self._batch(sampler, banks, task_weights, cpu_generator, device_generator)
                degraded = degraded.contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    restored = trained(degraded, embedding)
                loss = image_loss(restored.float(), target, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if self.leader:
                    update_ema(ema, model, min(config.ema_decay, (1 + self.step) / (10 + self.step)))
                self.step += 1
                meter.add(loss.item(), config.batch_size)
                if self.step % config.log_every == 0:
                    meter.report(metrics_file, optimizer.param_groups[0]["lr"], elapsed_s)
                if self.step % config.checkpoint_every == 0:
                    save_checkpoint()
                    if self.leader:
                        export(ema, head, config, self.output / "model", self.step)
                if self.step % config.validate_every == 0:
                    if validation is not None:
                        scores = validate(ema, validation)
                        meter.validated(metrics_file, scores)
                        if config.task_goals:
                            task_weights = gap_weights(config, scores)
                            shares = " ".join(f"{t} {w:.2f}" for t, w in zip(TASKS, task_weights.tolist(), strict=True))
                            self.log(f"task weights {shares}")
                    task_weights = self._share(task_weights)
                    model.train()
        finally:
            if metrics_file is not None:
                metrics_file.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        save_checkpoint()
        if config.resume_point and self.leader:
            ResumePoint(
                {k: v.float() for k, v in model.state_dict().items()},
                {k: v.float() for k, v in ema.state_dict().items()},
                config.to_dict(),
                self.step,
                self.elapsed(),
                config.seed,
            ).save(config.resume_point)
            self.log(f"resume point written to {config.resume_point} (step {self.step})")
        return export(ema, head, config, self.output / "model", self.step) if self.leader else self.output / "model"

    # ------------------------------------------------------------------ pieces of the loop

    def _batch(
        self,
        sampler: PatchSampler,
        banks: dict[str, Tensor],
        task_weights: Tensor,
        cpu_generator: torch.Generator,
        device_generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """This process's share of a batch: degraded patches, targets and instruction embeddings.

        A few samples get an unrelated instruction and their own degraded patch as the target, so
        the network learns to leave a photo alone when asked for nothing it can do.
        """
        config, count = self.config, self.config.batch_size // self.world
        clean = to_float(sampler.sample(count, cpu_generator), self.device)
        task_index = torch.multinomial(task_weights, count, replacement=True, generator=cpu_generator)
        degraded = degrade_mixed(clean, task_index.to(self.device), device_generator)
        labels = [TASKS[i] for i in task_index.tolist()]
        unrelated = torch.rand(count, generator=cpu_generator) < config.none_fraction
        target = clean.clone()
        for i in unrelated.nonzero(as_tuple=True)[0].tolist():
            labels[i] = NONE_CLASS
            target[i] = degraded[i]
        picks = [int(torch.randint(len(banks[label]), (1,), generator=cpu_generator)) for label in labels]
        embedding = torch.stack([banks[label][pick] for label, pick in zip(labels, picks, strict=True)])
        return degraded, target, embedding

    def _initialise(self, model: InstructIRNet) -> None:
        config = self.config
        if config.init_weights:
            model.load_state_dict(load_state_dict(config.init_weights)[0], strict=True)
            if self.leader:
                self.log(f"initialised from {config.init_weights}")
        if config.transplant_from:
            source, _ = load_state_dict(config.transplant_from)
            moved = transplant_state(source, detect_config(source), config.network)
            missing = model.load_state_dict(moved, strict=False).missing_keys
            if self.leader:
                self.log(f"transplanted {len(moved)} tensors from {config.transplant_from}; {len(missing)} start fresh")

    def _wrap(self, model: InstructIRNet) -> nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def _agree(self, elapsed_s: float, stop_requested: bool) -> tuple[float, bool]:
        """All processes take the same elapsed time (for the schedule) and stop together."""
        if self.world == 1:
            return elapsed_s, stop_requested
        import torch.distributed as dist

        shared = torch.tensor([elapsed_s, float(stop_requested)], dtype=torch.float64)
        dist.all_reduce(shared, op=dist.ReduceOp.MAX)
        return float(shared[0]), bool(shared[1])

    def _share(self, weights: Tensor) -> Tensor:
        if self.world == 1:
            return weights
        import torch.distributed as dist

        weights = weights.clone()
        dist.broadcast(weights, src=0)
        return weights

    def _rng_path(self, checkpoint: Path) -> Path:
        return checkpoint.with_name(f"rng-{self.rank}.pt")

    def _save_checkpoint(
        self,
        path: Path,
        model: nn.Module,
        ema: nn.Module,
        optimizer: torch.optim.Optimizer,
        cpu_generator: torch.Generator,
        device_generator: torch.Generator,
    ) -> None:
        rng = {"cpu_rng": cpu_generator.get_state(), "device_rng": device_generator.get_state().cpu()}
        if self.world > 1:
            _atomic_save(rng, self._rng_path(path))
        if self.leader:
            state = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": torch.tensor(self.step),
                "elapsed_s": torch.tensor(self.elapsed()),
                **(rng if self.world == 1 else {}),
            }
            _atomic_save(state, path)

    def _load_checkpoint(
        self,
        path: Path,
        model: nn.Module,
        ema: nn.Module,
        optimizer: torch.optim.Optimizer,
        cpu_generator: torch.Generator,
        device_generator: torch.Generator,
    ) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        rng = state
        if self.world > 1 and self._rng_path(path).is_file():
            rng = torch.load(self._rng_path(path), map_location="cpu", weights_only=True)
        if "cpu_rng" in rng:
            cpu_generator.set_state(rng["cpu_rng"])
            try:
                device_generator.set_state(rng["device_rng"])
            except (RuntimeError, KeyError):
                self.log("device random state not restored (checkpoint from another device); degradations reseeded")
        self.step = int(state["step"])
        self.elapsed_before = float(state.get("elapsed_s", torch.tensor(0.0)))
        if self.leader:
            self.log(f"resumed at step {self.step}")


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    temporary = path.with_suffix(".partial")
    torch.save(state, temporary)
    os.replace(temporary, path)


class _Meter:
    """Loss and throughput over the last log window, the latest validation, and the ETA."""

    def __init__(self, run: _Run, config: TrainConfig) -> None:
        self.run, self.config = run, config
        self.loss, self.patches, self.window_start = 0.0, 0, time.monotonic()
        self.first_step, self.first_budget = run.step, budget_used(run.step, run.elapsed(), config)
        self.first_time = time.monotonic()
        self.latest_gain: float | None = None

    def add(self, loss: float, patches: int) -> None:
        self.loss += loss
        self.patches += patches

    def report(self, file: IO[str] | None, lr: float, elapsed_s: float) -> None:
        if file is None:
            self.loss, self.patches, self.window_start = 0.0, 0, time.monotonic()
            return
        step, config = self.run.step, self.config
        seconds = time.monotonic() - self.window_start
        budget = budget_used(step, elapsed_s, config)
        spent = time.monotonic() - self.first_time
        progress = budget - self.first_budget
        eta = spent * (1 - budget) / progress if progress > 0 else None
        record = {
            "step": step,
            "loss": self.loss / config.log_every,
            "lr": lr,
            "patches_per_s": self.patches / max(seconds, 1e-9),
            "elapsed_min": elapsed_s / 60,
        }
        file.write(json.dumps(record) + "\n")
        file.flush()
        validation = f" · validation {self.latest_gain:+.2f} dB" if self.latest_gain is not None else ""
        self.run.log(
            f"step {step}/{config.steps} ({budget * 100:.1f} %, ETA {format_duration(eta)}) "
            f"loss {record['loss']:.4f} lr {lr:.2e} {record['patches_per_s']:.1f} patches/s{validation}"
        )
        self.loss, self.patches, self.window_start = 0.0, 0, time.monotonic()

    def validated(self, file: IO[str] | None, scores: dict[str, float]) -> None:
        self.latest_gain = float(np.mean([scores[t] - scores[f"{t}_input"] for t in TASKS]))
        if file is not None:
            file.write(json.dumps({"step": self.run.step, "validation": scores}) + "\n")
            file.flush()
        self.run.log("validation " + " ".join(f"{t} {scores[t]:.2f}/{scores[t + '_input']:.2f}" for t in TASKS))


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def image_loss(restored: Tensor, target: Tensor, config: TrainConfig) -> Tensor:
    """L1 plus a little frequency L1 (detail), or PSNR itself (log of each sample's MSE) to finish."""
    if config.loss == "psnr":
        mse = (restored - target).pow(2).flatten(1).mean(dim=1)
        return (10 / math.log(10)) * torch.log(mse + 1e-8).mean()
    return F.l1_loss(restored, target) + config.fft_loss_weight * frequency_l1(restored, target)


def gap_weights(config: TrainConfig, scores: dict[str, float]) -> Tensor:
    """Task sampling weights that follow each task's remaining gap to its goal (dB over the input).

    A task at or past its goal keeps a floor share so it is not forgotten.
    """
    gaps = []
    for task in TASKS:
        goal = config.task_goals.get(task)
        gain = scores[task] - scores[f"{task}_input"]
        gaps.append(GAP_FLOOR_DB if goal is None else max(GAP_FLOOR_DB, goal - gain))
    return torch.tensor(gaps, dtype=torch.float)


def export(ema: nn.Module, head: TextHead, config: TrainConfig, folder: Path, step: int) -> Path:
    assert isinstance(ema, InstructIRNet)
    # A head reused from a model folder keeps that folder's n-gram half of the class decision, so
    # the exported model reads instructions exactly as the one it came from.
    lexical = Path(config.text_head).with_name(LEXICAL_FILE) if config.text_head else None
    if lexical is not None and lexical.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lexical, folder / LEXICAL_FILE)
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

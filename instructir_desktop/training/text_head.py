"""Training the text head on frozen sentence vectors: 7 tasks plus ``none``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import TextHead
from instructir_desktop.training.text_data import EncodedCorpus, balanced_class_weights


@dataclass(frozen=True)
class HeadReport:
    accuracy: float
    per_class: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted
    count: int

    def to_markdown(self) -> str:
        lines = ["| class | held-out accuracy |", "|---|---|"]
        lines += [f"| {name} | {acc * 100:.1f} % |" for name, acc in self.per_class.items()]
        lines.append(f"| **all** ({self.count} lines) | **{self.accuracy * 100:.1f} %** |")
        return "\n".join(lines)


def train_text_head(
    train: EncodedCorpus,
    embedding_dim: int = 256,
    epochs: int = 100,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    vector_noise: float = 0.02,
    seed: int = 0,
) -> TextHead:
    """Full-batch AdamW with label smoothing and a little noise on the frozen vectors.

    The noise and smoothing keep the classes from collapsing onto the exact training lines,
    which matters because people phrase things in ways the corpus never saw.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = TextHead(train.vectors.shape[1], embedding_dim, len(CLASS_NAMES))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    _fit(head, optimizer, train, epochs, vector_noise, generator)
    return head.eval()


def _fit(
    head: TextHead,
    optimizer: torch.optim.Optimizer,
    train: EncodedCorpus,
    epochs: int,
    vector_noise: float,
    generator: torch.Generator,
) -> None:
    """Full-batch training of what ``optimizer`` holds, cosine schedule, class-balanced loss."""
    vectors = torch.from_numpy(train.vectors)
    labels = torch.from_numpy(train.labels)
    class_weights = torch.from_numpy(balanced_class_weights(train.labels)).float()
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    head.train()
    for _ in range(epochs):
        noisy = F.normalize(vectors + vector_noise * torch.randn(vectors.shape, generator=generator), dim=-1)
        _, logits = head(noisy)
        loss = F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def evaluate_text_head(head: TextHead, data: EncodedCorpus) -> HeadReport:
    with torch.inference_mode():
        _, logits = head(torch.from_numpy(data.vectors))
    return evaluate_decisions(logits.argmax(dim=-1).numpy(), data)


def evaluate_decisions(predicted: np.ndarray, data: EncodedCorpus) -> HeadReport:
    """Accuracy of class indices ``predicted`` for ``data``'s lines, overall and per class."""
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    for truth, guess in zip(data.labels, predicted, strict=True):
        confusion[truth, guess] += 1
    per_class = {
        name: float(confusion[i, i] / confusion[i].sum()) for i, name in enumerate(CLASS_NAMES) if confusion[i].sum()
    }
    return HeadReport(float((predicted == data.labels).mean()), per_class, confusion, len(data.labels))


def retrain_classifier(
    head: TextHead,
    train: EncodedCorpus,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    vector_noise: float = 0.02,
    seed: int = 0,
) -> TextHead:
    """A copy of ``head`` whose ``fc2`` is trained again on ``train`` while ``fc1`` stays exactly as it is.

    The image network is conditioned on ``fc1``'s embeddings, so a better class decision must not
    move them: only the classifier on top learns from a grown corpus.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    retrained = TextHead(head.fc1.in_features, head.fc1.out_features, len(CLASS_NAMES))
    retrained.fc1.load_state_dict(head.fc1.state_dict())
    retrained.fc1.requires_grad_(False)
    optimizer = torch.optim.AdamW(retrained.fc2.parameters(), lr=lr, weight_decay=weight_decay)
    _fit(retrained, optimizer, train, epochs, vector_noise, generator)
    retrained.fc1.requires_grad_(True)
    return retrained.eval()

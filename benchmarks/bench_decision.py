"""Can another classifier make the text model's class DECISION (not ``fc1``, which conditions the image
network) better than the bundled head? Each candidate is measured on a validation split carved from
the corpus's TRAINING lines, and on the held-out lines only when asked.

    python benchmarks/bench_decision.py             # validation only: what design choices were made on
    python benchmarks/bench_decision.py --heldout   # also the held-out lines (read once, at the end)

Validation: 5 folds over the training lines, stratified by class, where a fold leaves out whole
(class, voice) groups: the held-out split has class/voice pairs that training never saw ("denoise"
asked as a question), so leaving out only a family would flatter every candidate. Each fold trains on
the other folds' lines plus their three typo/wrapper variants (the trainer's recipe). It prints
accuracy numbers, never lines. Sentence vectors are cached under ``--cache``; about two minutes on
two busy cores once they are.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

FOLDS = 5

# rows to predict -> their class probabilities
Predictor = Callable[[np.ndarray], np.ndarray]
# rows to train on -> a predictor
Candidate = Callable[[np.ndarray], Predictor]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="runs/text-head-cache", help="folder for the cached sentence vectors")
    parser.add_argument("--heldout", action="store_true", help="also report the held-out split")
    args = parser.parse_args()

    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    from instructir_desktop.model.registry import default_model_spec, load_text_head
    from instructir_desktop.model.tasks import CLASS_NAMES
    from instructir_desktop.model.text import SentenceTransformerEncoder
    from instructir_desktop.training.corpus import load_corpus
    from instructir_desktop.training.text_data import EncodedCorpus, augmented, balanced_class_weights, encode_corpus
    from instructir_desktop.training.text_head import retrain_classifier, train_text_head

    started = time.perf_counter()
    torch.manual_seed(0)
    spec = default_model_spec()
    if spec.text_head is None:
        parser.error(f"{spec.name} has no text head")
    bundled, _ = load_text_head(spec.text_head, spec.classes)
    bundled = bundled.float()
    encoder = SentenceTransformerEncoder(spec.encoder)
    corpus = load_corpus()
    encoded = encode_corpus(corpus, encoder, args.cache)
    train = encoded.subset("train")
    variants = augmented(train, encoder, seed=0, cache_dir=args.cache)
    heldout = encoded.subset("heldout")
    lines = corpus.select(split="train")

    # One table of rows: training lines, their variants, held-out lines.
    data = train + variants + heldout
    texts = np.array(data.texts, dtype=object)
    labels = data.labels
    vectors = data.vectors
    line_groups = np.array([f"{line.label}/{line.voice}" for line in lines])
    # A variant keeps its line's group (``augmented`` writes each line's variants one after another).
    groups = np.concatenate([line_groups, np.repeat(line_groups, 3), np.full(len(heldout.texts), "heldout")])
    n = len(train.texts)
    originals = np.arange(n)
    all_training = np.arange(4 * n)
    heldout_rows = np.arange(4 * n, len(texts))

    def balanced(rows: np.ndarray) -> np.ndarray:
        return balanced_class_weights(labels[rows])[labels[rows]]

    def sentence_classifier(fit: np.ndarray) -> Predictor:
        model = LogisticRegression(C=10.0, max_iter=2000)
        model.fit(vectors[fit], labels[fit], sample_weight=balanced(fit))
        return lambda rows: model.predict_proba(vectors[rows])

    def nearest_neighbours(fit: np.ndarray, k: int = 40, temperature: float = 0.05) -> Predictor:
        def predict(rows: np.ndarray) -> np.ndarray:
            similarity = vectors[rows] @ vectors[fit].T
            nearest = np.argsort(-similarity, axis=1)[:, :k]
            votes = np.zeros((len(rows), len(CLASS_NAMES)))
            for row, neighbours in enumerate(nearest):
                np.add.at(votes[row], labels[fit][neighbours], np.exp(similarity[row, neighbours] / temperature))
            return votes / votes.sum(axis=1, keepdims=True)

        return predict

    def character_ngrams(fit: np.ndarray) -> Predictor:
        vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
        model = LogisticRegression(C=10.0, max_iter=3000)
        model.fit(vectoriser.fit_transform(texts[fit]), labels[fit], sample_weight=balanced(fit))
        return lambda rows: model.predict_proba(vectoriser.transform(texts[rows]))

    def text_head(fit: np.ndarray) -> Predictor:
        # Validation trains a whole head (fc1 + fc2) on the fold: the bundled fc1 has seen every
        # training line, so its fc2 would be measured on lines it learnt. Held-out uses the bundled head.
        if len(fit) == len(all_training):
            head = bundled
        else:
            head = train_text_head(EncodedCorpus(tuple(texts[fit]), labels[fit], ("train",) * len(fit), vectors[fit]))

        def predict(rows: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                _, logits = head(torch.from_numpy(vectors[rows]))
            return torch.softmax(logits, dim=-1).numpy()

        return predict

    def retrained_classifier(fit: np.ndarray) -> Predictor:
        # What ``bench_text_head.py --save`` ships: the bundled fc1 (the image network's conditioning)
        # frozen, only fc2 trained on the rows given. fc1 is one linear map, so having seen the
        # training lines flatters this less than a whole bundled head would be flattered.
        head = retrain_classifier(
            bundled, EncodedCorpus(tuple(texts[fit]), labels[fit], ("train",) * len(fit), vectors[fit])
        )

        def predict(rows: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                _, logits = head(torch.from_numpy(vectors[rows]))
            return torch.softmax(logits, dim=-1).numpy()

        return predict

    def mean_of(*parts: Candidate) -> Candidate:
        def fit_all(fit: np.ndarray) -> Predictor:
            predictors = [part(fit) for part in parts]
            return lambda rows: np.mean([predict(rows) for predict in predictors], axis=0)

        return fit_all

    candidates: dict[str, Candidate] = {
        "text head (validation: trained per fold; held-out: bundled)": text_head,
        "linear classifier on the 384-d sentence vector": sentence_classifier,
        "k nearest neighbours (k=40, cosine)": nearest_neighbours,
        "character 2-5-gram logistic regression": character_ngrams,
        "mean of: linear on 384-d + character n-grams": mean_of(sentence_classifier, character_ngrams),
        "mean of: text head + character n-grams": mean_of(text_head, character_ngrams),
        "fc2 retrained, bundled fc1 frozen": retrained_classifier,
        "mean of: fc2 retrained (fc1 frozen) + character n-grams": mean_of(retrained_classifier, character_ngrams),
    }

    splitter = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=0)
    folds = list(splitter.split(originals, labels[originals], groups[originals]))
    print(f"training lines {n} (+{3 * n} variants), {FOLDS} folds by class/voice; held-out {len(heldout_rows)}\n")
    header = "| candidate | validation all / none |" + (" held-out all / none | ms per line |" if args.heldout else "")
    print(header)
    print("|---|---|" + ("---|---|" if args.heldout else ""))
    for name, candidate in candidates.items():
        predicted = np.zeros(len(texts), dtype=np.int64)
        for kept, left_out in folds:
            kept_groups = set(groups[originals[kept]])
            fit = np.array([row for row in all_training if groups[row] in kept_groups])
            predicted[originals[left_out]] = candidate(fit)(originals[left_out]).argmax(axis=1)
        cells = [_accuracy(predicted[originals], labels[originals], CLASS_NAMES.index("none"))]
        if args.heldout:
            predict = candidate(all_training)
            cells.append(
                _accuracy(predict(heldout_rows).argmax(axis=1), labels[heldout_rows], CLASS_NAMES.index("none"))
            )
            cells.append(f"{_milliseconds_per_line(predict, heldout_rows):.2f}")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    if args.heldout:
        clock = time.perf_counter()
        for text in texts[heldout_rows[:50]]:
            encoder.encode([text])
        print(f"\nthe sentence encoder itself: {(time.perf_counter() - clock) * 1000 / 50:.1f} ms per line")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _milliseconds_per_line(predict: Predictor, rows: np.ndarray) -> float:
    """What the decision adds per instruction, one line at a time as the chat asks (the encoder not included)."""
    clock = time.perf_counter()
    for row in rows:
        predict(np.array([row]))
    return (time.perf_counter() - clock) * 1000 / len(rows)


def _accuracy(predicted: np.ndarray, truth: np.ndarray, none_index: int) -> str:
    overall = (predicted == truth).mean() * 100
    none = (predicted[truth == none_index] == none_index).mean() * 100
    return f"{overall:.1f} % / {none:.1f} %"


if __name__ == "__main__":
    raise SystemExit(main())

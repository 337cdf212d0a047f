"""Training the character n-gram half of the class decision (:mod:`instructir_desktop.model.lexical`)."""

from __future__ import annotations

import numpy as np

from instructir_desktop.model.lexical import DEFAULT_SETTINGS, LexicalClassifier
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.training.text_data import EncodedCorpus, balanced_class_weights

# Chosen on the training split with whole (class, voice) groups left out
# (benchmarks/bench_decision.py), never on the held-out lines.
MIN_DOCUMENT_FREQUENCY = 2
INVERSE_REGULARISATION = 10.0


def train_lexical_classifier(train: EncodedCorpus) -> LexicalClassifier:
    """Multinomial logistic regression on TF-IDF character 2-5-grams, classes balanced like the head's."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    settings = dict(DEFAULT_SETTINGS)
    vectoriser = TfidfVectorizer(
        analyzer=settings["analyzer"],
        ngram_range=tuple(settings["ngram_range"]),
        sublinear_tf=settings["sublinear_tf"],
        min_df=MIN_DOCUMENT_FREQUENCY,
    )
    features = vectoriser.fit_transform(list(train.texts))
    counts = np.bincount(train.labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    if (counts == 0).any():
        missing = [name for name, count in zip(CLASS_NAMES, counts, strict=True) if count == 0]
        raise ValueError(f"no training lines for {', '.join(missing)}")
    weights = balanced_class_weights(train.labels)[train.labels]
    model = LogisticRegression(C=INVERSE_REGULARISATION, max_iter=3000)
    model.fit(features, train.labels, sample_weight=weights)
    vocabulary = vectoriser.get_feature_names_out().tolist()
    return LexicalClassifier(
        classes=CLASS_NAMES,
        vocabulary=tuple(vocabulary),
        idf=vectoriser.idf_.astype(np.float32),
        coefficients=model.coef_.astype(np.float32),
        intercepts=model.intercept_.astype(np.float32),
        settings=settings,
    )

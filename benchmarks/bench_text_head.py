"""Held-out accuracy of the class decision: the bundled head alone, the app's decision (the bundled
head's probabilities averaged with the bundled character n-gram classifier's), and a head whose
classifier (``fc2``) is trained again on the current corpus with ``fc1`` frozen (the image network
is conditioned on ``fc1``'s embeddings, so they must not move).

    python benchmarks/bench_text_head.py                      # compare, write nothing
    python benchmarks/bench_text_head.py --save FILE          # also write the retrained head
    python benchmarks/bench_text_head.py --save-lexical FILE  # train the n-gram classifier again, write it

It prints the per-class accuracy on the corpus's held-out lines (never the lines themselves). The
corpus vectors are cached under ``--cache`` (encoding ~7,000 lines takes about two minutes on two
busy CPU cores).
"""

from __future__ import annotations

import argparse
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", help="write the retrained head (fc1 unchanged) to this .safetensors file")
    parser.add_argument("--save-lexical", help="train the character n-gram classifier and write it to this file")
    parser.add_argument("--cache", default="runs/text-head-cache", help="folder for the cached sentence vectors")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from instructir_desktop.model.registry import default_model_spec, load_lexical, load_text_head
    from instructir_desktop.model.tasks import CLASS_NAMES
    from instructir_desktop.model.text import SentenceTransformerEncoder
    from instructir_desktop.model.weights import save_state_dict
    from instructir_desktop.training.corpus import load_corpus
    from instructir_desktop.training.lexical_intent import train_lexical_classifier
    from instructir_desktop.training.text_data import augmented, encode_corpus
    from instructir_desktop.training.text_head import evaluate_decisions, evaluate_text_head, retrain_classifier

    started = time.perf_counter()
    spec = default_model_spec()
    if spec.text_head is None:
        parser.error(f"{spec.name} has no text head")
    bundled, classes = load_text_head(spec.text_head, spec.classes)
    if tuple(classes) != tuple(CLASS_NAMES):
        parser.error("the bundled head does not have the corpus's 8 classes")
    encoder = SentenceTransformerEncoder(spec.encoder)
    encoded = encode_corpus(load_corpus(), encoder, args.cache)
    train, heldout = encoded.subset("train"), encoded.subset("heldout")
    # Same recipe as the trainer: the training lines plus three typo/wrapper variants of each.
    with_variants = train + augmented(train, encoder, seed=args.seed, cache_dir=args.cache)
    print(f"training lines {len(train.texts)} (+{len(with_variants.texts) - len(train.texts)} variants)\n")

    print("bundled head:")
    print(evaluate_text_head(bundled.float(), heldout).to_markdown())
    with torch.inference_mode():
        head_probabilities = torch.softmax(bundled.float()(torch.from_numpy(heldout.vectors))[1], dim=-1).numpy()
    lexicals = {"the app's decision: bundled head + bundled character n-grams": load_lexical(spec.lexical, classes)}
    if args.save_lexical:
        lexicals["bundled head + character n-grams trained now"] = train_lexical_classifier(with_variants)
    for title, lexical in lexicals.items():
        if lexical is not None:
            decision = lexical.blend(head_probabilities, heldout.texts)
            print(f"\n{title} (mean of the probabilities):")
            print(evaluate_decisions(decision.argmax(axis=1), heldout).to_markdown())
    retrained = retrain_classifier(bundled.float(), with_variants, seed=args.seed)
    print("\nfc2 retrained on this corpus, fc1 frozen:")
    print(evaluate_text_head(retrained, heldout).to_markdown())

    if args.save:
        # fc1 is copied from the bundled file (float16 there), so saving in float16 keeps it bit for bit.
        save_state_dict(args.save, retrained.half().state_dict(), {"classes": list(CLASS_NAMES)})
        print(f"\nwrote {args.save}")
    if args.save_lexical:
        print(f"wrote {lexicals['bundled head + character n-grams trained now'].save(args.save_lexical)}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

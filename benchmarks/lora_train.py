"""LoRA training on the decoder: speed against the naive batch and the matmul peak, or a budgeted quality run.

    nice -n 10 python benchmarks/lora_train.py speed [--steps 4] [--batch 8] [--json OUT]
    nice -n 10 python benchmarks/lora_train.py eval --budget-minutes 20 [--route lora|prefix] [--json OUT]

`speed` times, in the same run and interleaved: training steps of the engine's way (the instruction prefix run
once per batch, each row holding only text + cue + gold label) and of the naive way (every row carries the whole
prompt, a plain causal-LM forward and backward). It reports examples/s of both, their ratio, and tokens/s x 6 x
the parameters on the trainable path (every non-embedding weight: gradients flow through all blocks to reach
the adapters) against the bf16 matmul peak measured between the repeats.

`eval` trains the route on smp2017 train under a time budget and reports macro-F1 and accuracy on test.
Texts are read at run time from the dataset folder; none are stored in the repo.
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

from benchmarks.extract import default_model_root, matmul_gflops, non_embedding_params
from benchmarks.machine import cpu_model
from modeling.engine.routes import ROUTE_MODULES, adapted_decoder, decoder, get_route, parse_params
from modeling.engine.routes.base import Examples, FitContext, Taxonomy

DATA = Path("/work/shared/datasets/smp2017")


def read_split(path: Path) -> Examples:
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("text", "").strip():
                texts.append(row["text"].strip())
                labels.append(row["label"])
    return Examples(texts, labels)


def label_set(train: Examples, fallback: str) -> tuple[list[str], Taxonomy]:
    keys = sorted(set(train.labels))
    return keys, Taxonomy.from_keys(keys, fallback)


def naive_loss(lm, prompt: decoder.EncodedPrompt, rows: list[list[int]], targets: np.ndarray, pad: int):
    """Every row = instruction + text + cue + gold label, right-padded; CE on the label tokens only."""
    full = [list(prompt.prefix_ids) + r + list(prompt.label_ids[t]) for r, t in zip(rows, targets, strict=True)]
    width = max(len(f) for f in full)
    ids = torch.full((len(full), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (f, r, t) in enumerate(zip(full, rows, targets, strict=True)):
        ids[i, : len(f)] = torch.tensor(f)
        mask[i, : len(f)] = 1
        start = len(prompt.prefix_ids) + len(r)
        labels[i, start : len(f)] = torch.tensor(prompt.label_ids[t])
    out = lm(input_ids=ids, attention_mask=mask, labels=labels)
    return out.loss, int(mask.sum())


def run_speed(args) -> dict:
    from peft import LoraConfig, get_peft_model

    train = read_split(DATA / "train.jsonl")
    keys, taxonomy = label_set(train, "chat")
    spec = adapted_decoder.resolve_decoder(adapted_decoder.DEFAULT_DECODER, args.model_root)
    lm, tokenizer = decoder.load_causal_lm(spec, "auto")
    params = parse_params("lora", {})
    _, prompt = adapted_decoder.make_prompt(tokenizer, taxonomy, keys, params)
    n_params = non_embedding_params(lm)
    model = get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    scorer = decoder.LabelScorer(model, prompt)
    rows = decoder.text_ids(tokenizer, prompt, train.texts)
    index = {k: i for i, k in enumerate(keys)}
    targets = np.array([index[lab] for lab in train.labels])
    rng = np.random.default_rng(0)
    model.train()

    def step(way: str) -> tuple[float, int]:
        batch = rng.choice(len(rows), size=args.batch, replace=False)
        start = time.perf_counter()
        if way == "engine":
            loss, tokens = adapted_decoder.batch_loss(
                scorer, [rows[i] for i in batch], targets[batch], np.ones(args.batch), False
            )
        else:
            loss, tokens = naive_loss(model, prompt, [rows[i] for i in batch], targets[batch], tokenizer.pad_token_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, tokens

    step("engine")
    step("naive")  # warm-up of both shapes
    seconds = {"engine": 0.0, "naive": 0.0}
    tokens = {"engine": 0, "naive": 0}
    peak = 0.0
    for _ in range(args.steps):
        peak = max(peak, matmul_gflops(torch.bfloat16, repeats=2))
        for way in ("engine", "naive"):
            s, t = step(way)
            seconds[way] += s
            tokens[way] += t
    examples = args.steps * args.batch
    result = {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "backbone": spec.name,
        "batch": args.batch,
        "steps_each": args.steps,
        "instruction_tokens": len(prompt.prefix_ids),
        "trainable_path_params": n_params,
        "adapter_params": sum(p.numel() for p in trainable),
        "peak_bf16_gflops": round(peak, 1),
    }
    for way in ("engine", "naive"):
        tps = tokens[way] / seconds[way]
        result[way] = {
            "examples_per_s": round(examples / seconds[way], 3),
            "seconds_per_step": round(seconds[way] / args.steps, 2),
            "tokens_per_s": round(tps, 1),
            "training_gflops": round(6 * n_params * tps / 1e9, 1),
            "share_of_peak": round(6 * n_params * tps / 1e9 / peak, 3),
        }
    result["speedup_examples_per_s"] = round(result["engine"]["examples_per_s"] / result["naive"]["examples_per_s"], 2)
    return result


def run_eval(args) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    ROUTE_MODULES.setdefault(args.route, f"modeling.engine.routes.{args.route}")
    train, test = read_split(DATA / "train.jsonl"), read_split(DATA / "test.jsonl")
    keys, taxonomy = label_set(train, "chat")
    route = get_route(args.route)
    params = parse_params(args.route, json.loads(args.params))
    ctx = FitContext(
        keys,
        taxonomy,
        model_root=args.model_root,
        deadline=time.monotonic() + args.budget_minutes * 60,
        checkpoint_dir=args.checkpoint_dir,
        progress=lambda e: print(f"{e.stage} {e.fraction:.2f} eta {e.eta_seconds or 0:.0f}s {e.message}", flush=True),
    )
    fitted = route.fit(train, read_split(DATA / "dev.jsonl"), params, ctx)
    start = time.perf_counter()
    logits = fitted.logits(test.texts)
    seconds = time.perf_counter() - start
    predicted = [keys[i] for i in logits.argmax(1)]
    return {
        "cpu": cpu_model(),
        "route": args.route,
        "params": params.model_dump(),
        "training": fitted.report,
        "test_macro_f1": round(float(f1_score(test.labels, predicted, average="macro")), 4),
        "test_accuracy": round(float(accuracy_score(test.labels, predicted)), 4),
        "scoring_seconds_per_text": round(seconds / len(test), 3),
        "n_test": len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "eval"])
    parser.add_argument("--model-root", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--route", default="lora", choices=["lora", "prefix"])
    parser.add_argument("--params", default="{}", help="route parameters as JSON")
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        # On a shared machine one thread per process avoids OpenMP waits on a descheduled sibling thread:
        # measured 2.7 s against 12-14 s a LoRA step with 2 threads while other jobs held the cores.
        torch.set_num_threads(args.threads)
    args.model_root = args.model_root or default_model_root()
    result = run_speed(args) if args.mode == "speed" else run_eval(args)
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

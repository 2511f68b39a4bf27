"""Feature-extraction benchmark: the engine's extractor vs the machine's matmul peak vs a naive loop.

    python benchmarks/extract.py [--json OUT] [--backbone NAME] [--n 2048] [--model-root DIR]
                                 [--data /work/shared/datasets/smp2017/train.jsonl] [--threads N]

Texts are read at run time from a JSONL file ({"text": ...} per line); none are stored in the repo.
GFLOP/s of the extractor counts 2 x non-embedding parameters x real (unpadded) tokens per second, so
padding, attention and pooling overheads all count against it. The matmul peak is re-measured before every
timed repeat and the best of each is kept, so a neighbour's burst on a shared machine hits both alike.
Also timed in the same repeats: the same extractor on transformers' own forward with every thread on one batch
at a time (fast_forward and parallel_batches off), to show what the engine's fast path adds, and the lean
forward's alternatives one by one (issue 14): padded length-sorted batches, packed rows with a block-diagonal
mask, larger row blocks (8k tokens), one stream splitting every matmul over all threads, INT8 linear layers.
Next to the figures it prints which kernels ran: the CPU's AMX flags, torch's CPU capability, the lean
forward's linear kernel and the oneDNN primitives (from oneDNN's verbose log of one small encode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_flags, cpu_model
from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor, bf16_is_faster, load_model
from modeling.engine.backbones.specs import resolve_backbone

DEFAULT_DATA = "/work/shared/datasets/smp2017/train.jsonl"


def default_model_root() -> Path:
    """MODEL_ROOT as the app sees it (env var or the settings default), without importing Django."""
    if os.environ.get("MODEL_ROOT"):
        return Path(os.environ["MODEL_ROOT"])
    data_dir = os.environ.get("SCENECLF_DATA_DIR", str(Path(__file__).resolve().parents[1] / "var"))
    return Path(data_dir) / "models"


def read_texts(path: Path, n: int) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line).get("text", "").strip()
            if text:
                texts.append(text)
    if not texts:
        raise SystemExit(f"no texts in {path}")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    return [texts[i] for i in picked]


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def int8_matmul_gops(size: int = 2048, repeats: int = 5) -> float:
    """torch._int_mm (int8 x int8 -> int32): what INT8 kernels could reach, for reference."""
    a = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    b = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    torch._int_mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch._int_mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def onednn_primitives(run) -> dict[str, int]:
    """oneDNN primitives (operation:implementation, e.g. inner_product:brg_matmul:avx512_core_amx_bf16) that
    executed during run(), from oneDNN's verbose log, which it writes to the process's stdout."""
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                run()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        rows = [line.split(",") for line in log if ",primitive,exec," in line]
    return dict(Counter(f"{row[5]}:{row[6]}" for row in rows if len(row) > 6))


def kernels(extractor: FeatureExtractor, texts: list[str]) -> dict:
    fast = extractor._fast
    return {
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "quantized_engine": torch.backends.quantized.engine,
        "linear_kernel": fast.linear_kernel if fast is not None else "transformers",
        "onednn_primitives": onednn_primitives(lambda: extractor.encode(texts[:64])),
    }


def _layout(extractor: FeatureExtractor, ids: list[list[int]], lengths: np.ndarray) -> str:
    if extractor._fast is None:
        return "padded"
    streams = extractor._streams(int(lengths.sum()))
    return "packed" if extractor._use_packed(ids, lengths, streams) else "padded"


def non_embedding_params(model: torch.nn.Module) -> int:
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)


def first_call_seconds(extractor: FeatureExtractor, texts: list[str]) -> float:
    """Warm-up (allocator, oneDNN kernels, the worker threads), timed: the start-up cost a process pays once."""
    start = time.perf_counter()
    extractor.encode(texts[: min(64, len(texts))])
    return time.perf_counter() - start


def time_interleaved(extractors: dict[str, FeatureExtractor], texts: list[str], repeats: int) -> dict[str, float]:
    """Best seconds per extractor, plus the best bf16/fp32 matmul GFLOP/s, all measured in the same repeats."""
    best = {name: float("inf") for name in extractors}
    best.update({"peak_fp32": 0.0, "peak_bf16": 0.0, "peak_int8": 0.0})
    for _ in range(repeats):
        best["peak_fp32"] = max(best["peak_fp32"], matmul_gflops(torch.float32, repeats=2))
        best["peak_bf16"] = max(best["peak_bf16"], matmul_gflops(torch.bfloat16, repeats=2))
        best["peak_int8"] = max(best["peak_int8"], int8_matmul_gops(repeats=2))
        for name, extractor in extractors.items():
            start = time.perf_counter()
            extractor.encode(texts)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def time_naive_loop(spec, texts: list[str]) -> float:
    """What a first attempt looks like: one text per forward, fp32, tokenizer call per text."""
    model, tokenizer = load_model(spec)
    start = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(spec.query_prefix + text, return_tensors="pt", truncation=True, max_length=256)
            hidden = model(**enc).last_hidden_state
            hidden.mean(1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="multilingual-e5-small")
    parser.add_argument("--model-root", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=2048, help="texts; a training set is thousands")
    parser.add_argument("--naive-n", type=int, default=128, help="texts for the naive loop (it is slow)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-tokens", type=int, default=FeatureConfig.batch_tokens)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip", nargs="*", default=[], help="variants to leave out (e.g. int8 rows_2k)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    spec = resolve_backbone(args.backbone, args.model_root or default_model_root())
    texts = read_texts(args.data, args.n)
    config = FeatureConfig.for_backbone(spec, dtype=args.dtype, batch_tokens=args.batch_tokens, threads=args.threads)
    extractor = FeatureExtractor(spec, config)
    extractor.choose_max_len(texts)
    variants = {
        "padded": replace(config, layout="padded"),
        "packed": replace(config, layout="packed"),
        "rows_2k": replace(config, batch_tokens=2048),
        "one_stream_8k": replace(config, batch_tokens=8192, parallel_batches=False),
        "int8": replace(config, dtype="int8"),
        "transformers_forward": replace(config, fast_forward=False, parallel_batches=False),
    }
    extractors = {"extractor": extractor}
    for name, variant in variants.items():
        if name in args.skip and name != "transformers_forward":
            continue
        extractors[name] = FeatureExtractor(spec, variant)
        extractors[name].max_len = extractor.max_len

    ids = extractor._token_ids(texts, extractor.max_len)
    real_tokens = sum(len(x) for x in ids)
    # Only the blocks up to the chosen layer run (early exit), so count only their share of the parameters.
    params = non_embedding_params(extractor.model) * extractor.layer_index / extractor.n_layers

    first_call = {name: first_call_seconds(ex, texts) for name, ex in extractors.items()}
    best = time_interleaved(extractors, texts, args.repeats)
    seconds = best["extractor"]
    naive_texts = texts[: args.naive_n]
    naive_seconds = time_naive_loop(spec, naive_texts)
    fp32_peak, bf16_peak, int8_peak = best["peak_fp32"], best["peak_bf16"], best["peak_int8"]
    best_peak = max(fp32_peak, bf16_peak)
    naive_texts_per_s = len(naive_texts) / naive_seconds
    lengths = np.array([len(x) for x in ids])
    rows = {}
    for name, ex in extractors.items():
        gflops = 2 * params * real_tokens / best[name] / 1e9
        rows[name] = {
            "texts_per_s": len(texts) / best[name],
            "gflops_real": gflops,
            "fraction_of_bf16_peak": gflops / bf16_peak,
            "fraction_of_best_peak": gflops / best_peak,
            "speedup_vs_naive": len(texts) / best[name] / naive_texts_per_s,
            "dtype": ex.dtype,
            "layout": _layout(ex, ids, lengths),
            "linear_kernel": ex._fast.linear_kernel if ex._fast is not None else "transformers (nn.Linear)",
        }
    ran = {name: kernels(extractors[name], texts) for name in ("extractor", "int8") if name in extractors}
    main_row = rows["extractor"]
    result = {
        "backbone": spec.name,
        "fingerprint": spec.fingerprint,
        "cpu_model": cpu_model(),
        "n_texts": len(texts),
        "threads": args.threads,
        "dtype_used": extractor.dtype,
        "bf16_faster_on_this_cpu": bf16_is_faster(),
        "max_len": extractor.max_len,
        "layer": extractor.layer_index,
        "real_tokens": real_tokens,
        "mean_tokens_per_text": real_tokens / len(texts),
        "non_embedding_params_run": int(params),
        "seconds": seconds,
        "texts_per_s": main_row["texts_per_s"],
        "gflops_real": main_row["gflops_real"],
        "matmul_gflops_fp32": fp32_peak,
        "matmul_gflops_bf16": bf16_peak,
        "matmul_gops_int8": int8_peak,
        "matmul_gflops_best": best_peak,
        "fraction_of_matmul_peak": main_row["fraction_of_best_peak"],
        "first_call_seconds": first_call["extractor"],
        "variants": rows,
        "kernels": ran,
        "transformers_forward_texts_per_s": rows["transformers_forward"]["texts_per_s"],
        "transformers_forward_fraction_of_matmul_peak": rows["transformers_forward"]["fraction_of_best_peak"],
        "naive_texts_per_s": naive_texts_per_s,
        "speedup_vs_naive": main_row["speedup_vs_naive"],
        "load_average": os.getloadavg(),
    }
    print(
        f"cpu               {result['cpu_model']}; flags {' '.join(cpu_flags()) or '-'};"
        f" torch {ran['extractor']['torch_cpu_capability']}"
    )
    print(
        f"backbone          {spec.name} ({extractor.dtype}, layer {extractor.layer_index}, max_len {extractor.max_len})"
    )
    print(f"texts             {len(texts)} ({real_tokens} real tokens, {real_tokens / len(texts):.1f}/text)")
    print(
        f"matmul 2048^3     fp32 {fp32_peak:7.1f} GFLOP/s   bf16 {bf16_peak:7.1f} GFLOP/s   int8 {int8_peak:7.1f} GOP/s"
    )
    print(f"{'way':22} {'texts/s':>9} {'GFLOP/s':>8} {'of bf16':>8} {'x naive':>8}  dtype layout kernel")
    for name, row in rows.items():
        print(
            f"{name:22} {row['texts_per_s']:9.1f} {row['gflops_real']:8.1f} {row['fraction_of_bf16_peak']:8.0%}"
            f" {row['speedup_vs_naive']:8.1f}  {row['dtype']} {row['layout']} {row['linear_kernel']}"
        )
    print(f"{'naive loop':22} {naive_texts_per_s:9.1f}  (one text per forward, fp32)")
    print(f"first call        {first_call['extractor']:9.2f} s (64 texts)")
    for name, info in ran.items():
        primitives = ", ".join(f"{k} x{v}" for k, v in sorted(info["onednn_primitives"].items())) or "none"
        print(
            f"kernels {name:9} linear {info['linear_kernel']}; quantized engine {info['quantized_engine']};"
            f" oneDNN: {primitives}"
        )
    print(f"load average      {' '.join(f'{x:.2f}' for x in os.getloadavg())} (machine shared: figures are indicative)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

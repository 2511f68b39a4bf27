"""What the `lora` and `prefix` routes share: parameters, the training loop with checkpoints, the fitted model.

Training: each step runs the instruction prefix once (with gradients: the adapter changes its keys and values)
and the batch's texts + gold label continuations against it; the loss is on the label tokens only. The run
checkpoints every N steps into ``ctx.checkpoint_dir`` and a later fit with the same parameters, data and
backbone resumes from the last checkpoint. A time budget ends it cleanly: the learning-rate schedule is
re-planned from the measured step time so that it decays to zero by the deadline, and the model is returned
as it stands.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.specs import BackboneSpec, resolve_backbone
from modeling.engine.data import TrainingDataParams
from modeling.engine.routes import decoder
from modeling.engine.routes.base import (
    Encoded,
    Examples,
    FitContext,
    LoadContext,
    ParamsError,
    Taxonomy,
)
from modeling.engine.routes.warm_start import decoder_warm_start

ROUTE_FILE = "route.json"
ADAPTER_DIR = "adapter"
LABEL_HEAD_FILE = "label_tokens.safetensors"
CHECKPOINT_FILE = "train_state.pt"
DEFAULT_DECODER = "qwen2.5-coder-0.5b-instruct"
LABEL_TOKENS_ABOVE = 40  # labels; above this "auto" gives each label its own output token


class DecoderParams(TrainingDataParams):
    backbone: str = Field(DEFAULT_DECODER, description="Decoder pack, local folder or hub id.")
    epochs: float = Field(3.0, gt=0.0, le=5.0, description="Passes over the train set (the time budget may end it).")
    batch_size: int = Field(8, ge=1, le=64)
    max_len: int = Field(
        160, ge=16, le=512, description="Tokens of text + cue + answer per example; the cached instruction is apart."
    )
    definitions: bool = Field(False, description="List each label's taxonomy definition in the instruction.")
    label_tokens: Literal["auto", "on", "off"] = Field(
        "auto", description=f"One added output token per label (auto: above {LABEL_TOKENS_ABOVE} labels)."
    )
    length_norm: bool = Field(False, description="Divide a label's log-probability by its token count.")
    checkpoint_every: int = Field(25, ge=1, description="Steps between checkpoints.")
    warmup_steps: int = Field(10, ge=0)
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    score_batch_tokens: int = Field(2048, ge=64, description="Tokens per scoring forward (speed only).")


def uses_label_tokens(params: DecoderParams, n_labels: int) -> bool:
    return params.label_tokens == "on" or (params.label_tokens == "auto" and n_labels > LABEL_TOKENS_ABOVE)


def make_prompt(tokenizer, taxonomy: Taxonomy, label_keys: Sequence[str], params: DecoderParams):
    """The prompt parts and their token ids; max_len bounds text + cue + the longest answer."""
    parts = decoder.build_prompt(tokenizer, taxonomy, label_keys, definitions=params.definitions)
    probe = decoder.encode_prompt(tokenizer, parts, 1)
    room = params.max_len - len(probe.cue_ids) - max(len(ids) for ids in probe.label_ids)
    if room < 4:
        raise ParamsError(f"max_len {params.max_len} leaves no room for the text after the cue and labels", "max_len")
    return parts, decoder.encode_prompt(tokenizer, parts, room)


def init_label_head(lm, prompt: decoder.EncodedPrompt):
    """Each label token's output row starts at the mean of its label word's token rows."""
    import torch

    weight = lm.get_output_embeddings().weight.detach().float()
    rows = [weight[list(ids[:-1]) or list(ids)].mean(0) for ids in prompt.label_ids]
    return torch.nn.Parameter(torch.stack(rows))


def run_fingerprint(params: DecoderParams, spec: BackboneSpec, prompt: decoder.EncodedPrompt, train: Examples) -> str:
    """Identity of a training run: a checkpoint is resumed only by the same run."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params.model_dump(), sort_keys=True, default=str).encode())
    digest.update(f"{spec.fingerprint}\0{prompt.fingerprint()}\0".encode())
    for text, label in zip(train.texts, train.labels, strict=True):
        digest.update(f"{text}\0{label}\n".encode())
    if train.weights is not None:
        digest.update(np.asarray(train.weights, dtype=np.float32).tobytes())
    return digest.hexdigest()[:24]


class Checkpoints:
    """Atomic save/restore of the trainable tensors, the optimiser and the step into one folder."""

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.path = Path(folder) / CHECKPOINT_FILE if folder is not None else None
        self.fingerprint = fingerprint

    def save(self, step: int, named: dict[str, Any], optimizer, elapsed: float) -> None:
        import torch

        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self.fingerprint,
            "step": step,
            "elapsed": elapsed,
            "trainable": {name: p.detach().clone() for name, p in named.items()},
            "optimizer": optimizer.state_dict(),
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(self, named: dict[str, Any], optimizer) -> tuple[int, float]:
        """(step, elapsed seconds) of the last checkpoint of this run, loaded into `named` and `optimizer`."""
        import torch

        if self.path is None or not self.path.exists():
            return 0, 0.0
        state = torch.load(self.path, weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            return 0, 0.0
        with torch.no_grad():
            for name, tensor in state["trainable"].items():
                named[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), float(state["elapsed"])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_loss(scorer: decoder.LabelScorer, rows, targets: np.ndarray, weights: np.ndarray, label_tokens: bool):
    """Mean (weighted) loss on the gold label's tokens, the instruction prefix computed once for the batch."""
    import torch

    context = scorer.context()
    which = [[] for _ in rows] if label_tokens else [[int(t)] for t in targets]
    packed = decoder.pack(rows, scorer.prompt, which)
    hidden = scorer.hidden(packed, context)
    gold = torch.from_numpy(targets)
    if label_tokens:
        per_example = torch.nn.functional.cross_entropy(
            scorer.label_token_logits(packed, hidden), gold, reduction="none"
        )
    else:
        summed = scorer.sequence_logprobs(packed, hidden)[torch.arange(len(rows)), gold]
        per_example = -summed / torch.from_numpy(scorer.label_lengths()[targets])
    w = torch.from_numpy(weights.astype(np.float32))
    return (per_example * w).sum() / w.sum(), packed.real_tokens + len(scorer.prompt.prefix_ids)


def train_adapter(
    scorer: decoder.LabelScorer,
    tokenizer,
    trainable: dict[str, Any],
    train: Examples,
    label_keys: list[str],
    params: DecoderParams,
    lr: float,
    ctx: FitContext,
    fingerprint: str,
    label_tokens: bool,
) -> dict[str, Any]:
    """Runs (or resumes) the optimisation; returns a JSON-able report of how it went and why it stopped."""
    import torch

    index = {k: i for i, k in enumerate(label_keys)}
    unknown = sorted({lab for lab in train.labels if lab not in index})
    if unknown:
        raise ParamsError(f"train labels not in the label set: {', '.join(unknown[:5])}", "labels")
    if len(train) == 0:
        raise ParamsError("the train set is empty", "train")
    targets = np.array([index[lab] for lab in train.labels])
    weights = np.ones(len(train)) if train.weights is None else np.asarray(train.weights, dtype=np.float64)
    rows = decoder.text_ids(tokenizer, scorer.prompt, train.texts)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=lr, weight_decay=0.0)
    checkpoints = Checkpoints(ctx.checkpoint_dir, fingerprint)
    step, elapsed_before = checkpoints.restore(trainable, optimizer)
    resumed_from = step
    per_epoch = math.ceil(len(train) / params.batch_size)
    total = max(1, math.ceil(params.epochs * per_epoch))
    horizon = total
    progress = ctx.stage("fit")
    progress.resumed_at(step / total)
    started, tokens, losses, stopped = time.monotonic(), 0, [], "epochs"
    scorer.model.train()
    try:
        while step < total:
            ctx.check_cancel()
            if ctx.out_of_time():
                stopped = "budget"
                break
            epoch, offset = divmod(step, per_epoch)
            batch = epoch_order(len(train), ctx.seed, epoch)[
                offset * params.batch_size : (offset + 1) * params.batch_size
            ]
            for group in optimizer.param_groups:
                group["lr"] = lr * _schedule(step, horizon, params.warmup_steps)
            loss, n_tokens = batch_loss(scorer, [rows[i] for i in batch], targets[batch], weights[batch], label_tokens)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trainable.values()), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += n_tokens
            losses.append(float(loss.detach()))
            horizon = _replan(step, total, resumed_from, started, ctx.deadline)
            progress(step / horizon, f"step {step}/{horizon}, loss {np.mean(losses[-20:]):.3f}")
            if step % params.checkpoint_every == 0 or step == total:
                checkpoints.save(step, trainable, optimizer, elapsed_before + time.monotonic() - started)
    finally:
        scorer.model.eval()
        scorer.forget_context()
    seconds = time.monotonic() - started
    return {
        "steps": step,
        "planned_steps": total,
        "resumed_from_step": resumed_from,
        "epochs_done": round(step / per_epoch, 3),
        "stopped_by": stopped,
        "train_seconds": round(elapsed_before + seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
    }


def _schedule(step: int, horizon: int, warmup: int) -> float:
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return ramp * max(0.05, 1.0 - step / max(horizon, 1))


def _replan(step: int, total: int, resumed_from: int, started: float, deadline: float | None) -> int:
    """Steps the run will reach: all of them, or as many as fit before the deadline at the measured pace."""
    if deadline is None or step == resumed_from:
        return total
    per_step = (time.monotonic() - started) / (step - resumed_from)
    reachable = step + int(max(0.0, deadline - time.monotonic()) / max(per_step, 1e-9))
    return min(total, max(step + 1, reachable))  # while it runs, at least the next step is still to come


class AdaptedDecoder:
    """A decoder with a trained adapter that scores every label of the task for each text."""

    def __init__(
        self,
        route: str,
        label_keys: list[str],
        spec: BackboneSpec,
        model,
        tokenizer,
        parts: decoder.PromptParts,
        prompt: decoder.EncodedPrompt,
        params: DecoderParams,
        label_head=None,
        virtual: Callable | None = None,
        report: dict | None = None,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        self.route, self.label_keys, self.spec = route, label_keys, spec
        self.model, self.tokenizer, self.parts, self.prompt = model, tokenizer, parts, prompt
        self.params, self.report = params, report or {}
        self.label_tokens = label_head is not None
        self.taxonomy = taxonomy or Taxonomy.from_keys(label_keys, label_keys[-1])
        self.scorer = decoder.LabelScorer(model, prompt, virtual=virtual, label_head=label_head)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts).logits

    def encode(self, texts: Sequence[str]) -> Encoded:
        scores, features = decoder.score_texts(
            self.scorer,
            self.tokenizer,
            texts,
            label_tokens=self.label_tokens,
            length_norm=self.params.length_norm,
            budget_tokens=self.params.score_batch_tokens,
            with_features=True,
        )
        return Encoded(scores, features)

    def reason(self, text: str, label_key: str) -> str:
        info = self.taxonomy.get(label_key)
        return decoder.generate_reason(self.model, self.tokenizer, text, info.name or label_key, info.definition)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder / ADAPTER_DIR)
        if self.label_tokens:
            save_file({"weight": self.scorer.label_head.detach().float().contiguous()}, folder / LABEL_HEAD_FILE)
        record = {
            "route": self.route,
            "label_keys": self.label_keys,
            "backbone": self.spec.name,
            "backbone_path": self.spec.path,
            "fingerprint": self.spec.fingerprint,
            "prompt": {"prefix": self.parts.prefix, "cue": self.parts.cue, "label_words": self.parts.label_words},
            "max_text_tokens": self.prompt.max_text_tokens,
            "label_tokens": self.label_tokens,
            "params": self.params.model_dump(),
            "taxonomy": [
                {"key": lab.key, "name": lab.name, "definition": lab.definition, "examples": list(lab.examples)}
                for lab in self.taxonomy.labels
            ],
            "fallback_key": self.taxonomy.fallback_key,
            "report": self.report,
        }
        (folder / ROUTE_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        adapter = sum(p.numel() for n, p in self.model.named_parameters() if "lora_" in n or "prompt_encoder" in n)
        return {
            "route": self.route,
            "backbone_name": self.spec.name,
            "backbone_fingerprint": self.spec.fingerprint,
            "kind": "decoder",
            "precision": str(self.scorer.dtype).replace("torch.", ""),
            "instruction_tokens": len(self.prompt.prefix_ids),
            "label_tokens": self.label_tokens,
            "adapter_parameters": int(adapter),
            "training": self.report,
            "warm_start": self.report.get("warm_start"),
        }


def resolve_decoder(name: str, model_root: Path | None) -> BackboneSpec:
    spec = resolve_backbone(name, model_root)
    if spec.kind != "decoder":
        raise ParamsError(f"backbone {name!r} is an encoder; this route needs a decoder", "backbone")
    return spec


def read_record(folder: Path, route: str, ctx: LoadContext) -> tuple[dict, BackboneSpec, Taxonomy]:
    record = json.loads((Path(folder) / ROUTE_FILE).read_text(encoding="utf-8"))
    if record.get("route") != route:
        raise BackboneError(f"{folder} holds a {record.get('route')!r} model, not {route!r}")
    try:
        spec = resolve_backbone(record["backbone"], ctx.model_root)
    except BackboneError:
        spec = resolve_backbone(record["backbone_path"], ctx.model_root)
    if spec.fingerprint != record["fingerprint"]:
        raise BackboneError(
            f"backbone {spec.name} has fingerprint {spec.fingerprint[:12]}, the model was trained on "
            f"{record['fingerprint'][:12]}"
        )
    taxonomy = Taxonomy(
        tuple(decoder_label(item) for item in record.get("taxonomy", [])), record.get("fallback_key", "")
    )
    return record, spec, taxonomy


def decoder_label(item: dict):
    from modeling.engine.routes.base import LabelInfo

    return LabelInfo(
        key=item["key"],
        name=item.get("name", ""),
        definition=item.get("definition", ""),
        examples=tuple(item.get("examples", ())),
    )


def prompt_from_record(tokenizer, record: dict) -> tuple[decoder.PromptParts, decoder.EncodedPrompt]:
    p = record["prompt"]
    parts = decoder.PromptParts(p["prefix"], p["cue"], tuple(p["label_words"]))
    return parts, decoder.encode_prompt(tokenizer, parts, int(record["max_text_tokens"]))


def load_label_head(folder: Path):
    import torch
    from safetensors.torch import load_file

    path = Path(folder) / LABEL_HEAD_FILE
    return torch.nn.Parameter(load_file(path)["weight"], requires_grad=False) if path.exists() else None


def fit_adapted(
    route_name: str,
    wrap: Callable[[Any, DecoderParams], Any],
    train: Examples,
    params: DecoderParams,
    ctx: FitContext,
    virtual_kv: Callable[[Any], Any] | None = None,
) -> AdaptedDecoder:
    """The fit of every adapter route: load the decoder, build the prompt, wrap it with the route's peft
    adapter (``wrap``), and train the adapter (and the label tokens, when used) on the label words."""
    import torch

    torch.manual_seed(ctx.seed)
    spec = resolve_decoder(params.backbone, ctx.model_root)
    lm, tokenizer = decoder.load_causal_lm(spec, params.dtype)
    parts, prompt = make_prompt(tokenizer, ctx.taxonomy, ctx.label_keys, params)
    label_head = init_label_head(lm, prompt) if uses_label_tokens(params, len(ctx.label_keys)) else None
    model = wrap(lm, params)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if label_head is not None:
        trainable["label_tokens"] = label_head
    fitted = AdaptedDecoder(
        route_name,
        list(ctx.label_keys),
        spec,
        model,
        tokenizer,
        parts,
        prompt,
        params,
        label_head,
        None if virtual_kv is None else virtual_kv(model),
        taxonomy=ctx.taxonomy,
    )
    warm = None
    if ctx.warm_start is not None:
        warm = decoder_warm_start(ctx.warm_start, route_name, spec, model, label_head, fitted.label_keys).to_dict()
    fingerprint = run_fingerprint(params, spec, prompt, train)
    fitted.report = train_adapter(
        fitted.scorer, tokenizer, trainable, train, fitted.label_keys, params, params.lr, ctx, fingerprint,
        label_head is not None,
    )  # fmt: skip
    fitted.report["warm_start"] = warm
    return fitted


def load_adapted(
    route_name: str,
    params_class: type[DecoderParams],
    folder: Path,
    ctx: LoadContext,
    finish: Callable[[Any, Any], Any] = lambda model, params: model,
    virtual_kv: Callable[[Any], Any] | None = None,
) -> AdaptedDecoder:
    """Load what ``AdaptedDecoder.save`` wrote; ``finish(model, params)`` may change the loaded peft model
    (merging LoRA weights for serving)."""
    from peft import PeftModel

    record, spec, taxonomy = read_record(folder, route_name, ctx)
    params = params_class.model_validate(record["params"])
    lm, tokenizer = decoder.load_causal_lm(spec, params.dtype)
    model = finish(PeftModel.from_pretrained(lm, Path(folder) / ADAPTER_DIR), params).eval()
    parts, prompt = prompt_from_record(tokenizer, record)
    return AdaptedDecoder(
        route_name,
        record["label_keys"],
        spec,
        model,
        tokenizer,
        parts,
        prompt,
        params,
        load_label_head(folder),
        None if virtual_kv is None else virtual_kv(model),
        record.get("report"),
        taxonomy,
    )

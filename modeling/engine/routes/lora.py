"""Route 2, `lora`: LoRA on the decoder's attention projections, trained to write the gold label word.

Predictions score every label's continuation (see ``decoder``), so the output is always one of the labels."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from modeling.engine.routes import adapted_decoder as ad
from modeling.engine.routes import decoder, register
from modeling.engine.routes.base import Examples, FitContext, LoadContext

_TARGETS = {
    "qv": ["q_proj", "v_proj"],
    "qkv": ["q_proj", "k_proj", "v_proj"],
    "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


class LoraParams(ad.DecoderParams):
    r: int = Field(8, ge=2, le=16, description="LoRA rank.")
    alpha: int = Field(16, ge=1, le=64, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, le=0.5)
    targets: Literal["qv", "qkv", "qkvo"] = Field("qv", description="Attention projections that get an adapter.")
    lr: float = Field(1e-4, gt=0.0, le=1e-2)
    merge: bool = Field(False, description="Merge the adapter into the weights when loading for serving.")


def _wrap(lm, params: LoraParams):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=_TARGETS[params.targets],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm, config)


class LoraRoute:
    name: ClassVar[str] = "lora"
    title: ClassVar[str] = "LoRA fine-tuning of the decoder, answers constrained to the labels"
    help: ClassVar[str] = (
        "Adapts the decoder itself; the strongest route with a few hundred examples or more, but hours of CPU."
    )
    Params: ClassVar[type[LoraParams]] = LoraParams
    needs_training: ClassVar[bool] = True

    def fit(self, train: Examples, val: Examples, params: LoraParams, ctx: FitContext) -> ad.AdaptedDecoder:
        import torch

        torch.manual_seed(ctx.seed)
        spec = ad.resolve_decoder(params.backbone, ctx.model_root)
        lm, tokenizer = decoder.load_causal_lm(spec, params.dtype)
        parts, prompt = ad.make_prompt(tokenizer, ctx.taxonomy, ctx.label_keys, params)
        label_head = ad.init_label_head(lm, prompt) if ad.uses_label_tokens(params, len(ctx.label_keys)) else None
        model = _wrap(lm, params)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if label_head is not None:
            trainable["label_tokens"] = label_head
        fitted = ad.AdaptedDecoder(
            self.name,
            list(ctx.label_keys),
            spec,
            model,
            tokenizer,
            parts,
            prompt,
            params,
            label_head,
            None,
            taxonomy=ctx.taxonomy,
        )
        fingerprint = ad.run_fingerprint(params, spec, prompt, train)
        fitted.report = ad.train_adapter(
            fitted.scorer,
            tokenizer,
            trainable,
            train,
            fitted.label_keys,
            params,
            params.lr,
            ctx,
            fingerprint,
            label_head is not None,
        )
        return fitted

    def load(self, folder: Path, ctx: LoadContext) -> ad.AdaptedDecoder:
        from peft import PeftModel

        record, spec, taxonomy = ad.read_record(folder, self.name, ctx)
        params = LoraParams.model_validate(record["params"])
        lm, tokenizer = decoder.load_causal_lm(spec, params.dtype)
        model = PeftModel.from_pretrained(lm, Path(folder) / ad.ADAPTER_DIR)
        if params.merge:
            model = model.merge_and_unload()
        parts, prompt = ad.prompt_from_record(tokenizer, record)
        return ad.AdaptedDecoder(
            self.name,
            record["label_keys"],
            spec,
            model.eval(),
            tokenizer,
            parts,
            prompt,
            params,
            ad.load_label_head(folder),
            None,
            record.get("report"),
            taxonomy,
        )


register(LoraRoute())

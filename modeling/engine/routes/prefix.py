"""Route 3, `prefix`: peft prefix tuning (trained virtual key/value tokens in every layer), same label scoring.

The virtual tokens sit before the instruction prefix; at inference both are one cached context."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from modeling.engine.routes import adapted_decoder as ad
from modeling.engine.routes import decoder, register
from modeling.engine.routes.base import Examples, FitContext, LoadContext


class PrefixParams(ad.DecoderParams):
    virtual_tokens: int = Field(30, ge=20, le=100, description="Trained key/value positions per layer.")
    # peft's prefix-tuning examples train at 1e-2 to 3e-2, two orders above LoRA: only the prefix moves.
    lr: float = Field(1e-2, gt=0.0, le=1e-1)
    projection: bool = Field(False, description="Reparametrise the prefix through an MLP (more parameters).")


def virtual_kv(model):
    """Per-layer (k, v) of the virtual tokens for batch 1, as peft's prefix encoder produces them."""

    def produce():
        prompt = model.get_prompt(batch_size=1)
        if hasattr(prompt, "layers"):
            return decoder.cache_layers(prompt)
        return [(layer[0], layer[1]) for layer in prompt]

    return produce


def _wrap(lm, params: PrefixParams):
    from peft import PrefixTuningConfig, get_peft_model

    config = PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=params.virtual_tokens, prefix_projection=params.projection
    )
    return get_peft_model(lm, config)


class PrefixRoute:
    name: ClassVar[str] = "prefix"
    title: ClassVar[str] = "Prefix tuning of the decoder, answers constrained to the labels"
    help: ClassVar[str] = "Trains only virtual tokens in front of every layer: smaller and lighter than LoRA."
    Params: ClassVar[type[PrefixParams]] = PrefixParams
    needs_training: ClassVar[bool] = True

    def fit(self, train: Examples, val: Examples, params: PrefixParams, ctx: FitContext) -> ad.AdaptedDecoder:
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
            virtual_kv(model),
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
        params = PrefixParams.model_validate(record["params"])
        lm, tokenizer = decoder.load_causal_lm(spec, params.dtype)
        model = PeftModel.from_pretrained(lm, Path(folder) / ad.ADAPTER_DIR).eval()
        parts, prompt = ad.prompt_from_record(tokenizer, record)
        return ad.AdaptedDecoder(
            self.name,
            record["label_keys"],
            spec,
            model,
            tokenizer,
            parts,
            prompt,
            params,
            ad.load_label_head(folder),
            virtual_kv(model),
            record.get("report"),
            taxonomy,
        )


register(PrefixRoute())

"""Route 2, `lora`: LoRA on the decoder's attention projections, trained to write the gold label word.

Predictions score every label's continuation (see ``decoder``), so the output is always one of the labels."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from modeling.engine.routes import adapted_decoder as ad
from modeling.engine.routes import register
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
    warm_starts: ClassVar[bool] = True

    def fit(self, train: Examples, val: Examples, params: LoraParams, ctx: FitContext) -> ad.AdaptedDecoder:
        return ad.fit_adapted(self.name, _wrap, train, params, ctx)

    def load(self, folder: Path, ctx: LoadContext) -> ad.AdaptedDecoder:
        return ad.load_adapted(self.name, LoraParams, folder, ctx, finish=_merged_if_asked)


def _merged_if_asked(model, params: LoraParams):
    return model.merge_and_unload() if params.merge else model


register(LoraRoute())

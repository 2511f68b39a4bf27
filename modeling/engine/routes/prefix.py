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
    warm_starts: ClassVar[bool] = True

    def fit(self, train: Examples, val: Examples, params: PrefixParams, ctx: FitContext) -> ad.AdaptedDecoder:
        return ad.fit_adapted(self.name, _wrap, train, params, ctx, virtual_kv=virtual_kv)

    def load(self, folder: Path, ctx: LoadContext) -> ad.AdaptedDecoder:
        return ad.load_adapted(self.name, PrefixParams, folder, ctx, virtual_kv=virtual_kv)


register(PrefixRoute())

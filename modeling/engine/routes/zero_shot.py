"""`zero_shot`: labels from the taxonomy alone (names, definitions, examples), no training.

Two scorers, used alone or together (``method``):

- ``encoder``: cosine between ``query: text`` and each label's prototype, the mean of the e5 embeddings of
  ``passage: name：definition`` and of each of its examples.
- ``decoder``: the decoder's label-word log-probabilities (see ``decoder``), corrected for the decoder's prior
  over the label words. The prior is estimated on the taxonomy's own texts (every label's name + definition
  and its examples), averaged per label first so that each label weighs the same: a content-free input ("",
  "N/A") measures what the decoder prefers for *no* content, which is not what it prefers for in-domain text.
- ``combined`` (default, best in the measurements of docs/ROUTES.md): the encoder shortlists ``shortlist``
  labels, the decoder re-scores only those, and the two scores are added after standardising each over the
  shortlist. Labels outside the shortlist keep the encoder's score, below every shortlisted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from modeling.engine.backbones.features import FeatureConfig, FeatureExtractor
from modeling.engine.backbones.packs import BackboneError
from modeling.engine.backbones.specs import resolve_backbone
from modeling.engine.data import TrainingDataParams
from modeling.engine.routes import adapted_decoder as ad
from modeling.engine.routes import decoder, register
from modeling.engine.routes.base import Encoded, Examples, FitContext, LoadContext, Taxonomy

ROUTE_FILE = "zero_shot.json"
PROTOTYPES_FILE = "prototypes.npy"
CONTENT_FREE = ("", "N/A", "无", "嗯")


class ZeroShotParams(TrainingDataParams):
    method: Literal["combined", "encoder", "decoder"] = "combined"
    encoder: str = Field("multilingual-e5-small", description="Encoder pack for the prototype similarity.")
    decoder: str = Field(ad.DEFAULT_DECODER, description="Decoder pack for label-word scoring.")
    definitions: bool = Field(True, description="List the labels' definitions in the decoder's instruction.")
    prior: Literal["taxonomy", "content_free", "none"] = Field(
        "taxonomy", description="How the decoder's preference for some label words is measured and removed."
    )
    length_norm: bool = Field(False, description="Divide a label's log-probability by its token count.")
    shortlist: int = Field(10, ge=2, le=200, description="Labels the encoder passes to the decoder (combined).")
    decoder_weight: float = Field(0.5, ge=0.0, le=10.0, description="Weight of the decoder's standardised score.")
    prior_texts: int = Field(64, ge=1, le=2000, description="Taxonomy texts the decoder's prior is measured on.")
    max_text_tokens: int = Field(128, ge=8, le=512)
    dtype: Literal["auto", "fp32", "bf16"] = "auto"


def label_passages(taxonomy: Taxonomy, keys: Sequence[str]) -> list[list[str]]:
    """Per label: its name + definition, then each of its examples."""
    out = []
    for key in keys:
        info = taxonomy.get(key)
        head = "：".join(part for part in (info.name or key, info.definition) if part)
        out.append([head, *info.examples])
    return out


def calibration_texts(passages: list[list[str]], cap: int) -> list[tuple[int, str]]:
    """(label, text) pairs, round-robin over the labels (every label's first text, then its second…), so a cap
    keeps the set balanced; with more labels than the cap, evenly spaced labels give their first text."""
    if len(passages) > cap:
        return [(int(k), passages[k][0]) for k in np.linspace(0, len(passages) - 1, cap).round().astype(int)]
    out, depth = [], 0
    while len(out) < cap and any(depth < len(texts) for texts in passages):
        out += [(k, texts[depth]) for k, texts in enumerate(passages) if depth < len(texts)]
        depth += 1
    return out[:cap]


def standardise(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per row, (s - mean) / std over the entries in `keep`; other entries are left at 0."""
    masked = np.where(keep, scores, np.nan)
    mean = np.nanmean(masked, axis=1, keepdims=True)
    std = np.nanstd(masked, axis=1, keepdims=True)
    return np.where(keep, (scores - mean) / np.where(std > 0, std, 1.0), 0.0)


class ZeroShotModel:
    def __init__(self, label_keys, params: ZeroShotParams, taxonomy: Taxonomy, model_root: Path | None) -> None:
        self.label_keys, self.params, self.taxonomy = list(label_keys), params, taxonomy
        self.model_root = model_root
        self.prototypes: np.ndarray | None = None
        self.prior: np.ndarray | None = None
        self._encoder: FeatureExtractor | None = None
        self._decoder = None

    # -- the two scorers -------------------------------------------------------------------------------------
    @property
    def uses_encoder(self) -> bool:
        return self.params.method in ("encoder", "combined")

    @property
    def uses_decoder(self) -> bool:
        return self.params.method in ("decoder", "combined")

    def encoder(self) -> FeatureExtractor:
        if self._encoder is None:
            spec = resolve_backbone(self.params.encoder, self.model_root)
            if spec.kind != "encoder":
                raise BackboneError(f"{spec.name} is a decoder; `encoder` needs an encoder pack")
            self._encoder = FeatureExtractor(spec, FeatureConfig.for_backbone(spec))
        return self._encoder

    def passage_encoder(self) -> FeatureExtractor:
        """The same extractor with e5's passage prefix instead of the query prefix."""
        query = self.encoder()
        passage = FeatureExtractor(replace(query.spec, query_prefix="passage: "), query.config)
        passage.max_len = query.max_len
        return passage

    def decoder_scorer(self):
        """(scorer, tokenizer) over the frozen decoder with the taxonomy prompt."""
        if self._decoder is None:
            spec = ad.resolve_decoder(self.params.decoder, self.model_root)
            lm, tokenizer = decoder.load_causal_lm(spec, self.params.dtype)
            parts = decoder.build_prompt(tokenizer, self.taxonomy, self.label_keys, definitions=self.params.definitions)
            prompt = decoder.encode_prompt(tokenizer, parts, self.params.max_text_tokens)
            self._decoder = (decoder.LabelScorer(lm, prompt), tokenizer, spec)
        return self._decoder

    # -- fit: prototypes and the decoder's prior, from the taxonomy only ---------------------------------------
    def build(self) -> None:
        passages = label_passages(self.taxonomy, self.label_keys)
        if self.uses_encoder:
            encoder = self.passage_encoder()
            vectors = [encoder.encode(texts).mean(0) for texts in passages]
            protos = np.stack(vectors)
            self.prototypes = protos / np.linalg.norm(protos, axis=1, keepdims=True)
        if self.uses_decoder:
            self.prior = self.measure_prior(passages)

    def measure_prior(self, passages: list[list[str]]) -> np.ndarray:
        if self.params.prior == "none":
            return np.zeros(len(self.label_keys), dtype=np.float32)
        if self.params.prior == "content_free":
            return self.decoder_logprobs(list(CONTENT_FREE)).mean(0)
        picked = calibration_texts(passages, self.params.prior_texts)
        scores = self.decoder_logprobs([text for _, text in picked])
        owner = np.array([label for label, _ in picked])
        return np.stack([scores[owner == k].mean(0) for k in np.unique(owner)]).mean(0)

    def decoder_logprobs(self, texts: Sequence[str], which: np.ndarray | None = None) -> np.ndarray:
        """Label log-probabilities normalised over the labels scored (all, or each row's `which` shortlist)."""
        scorer, tokenizer, _ = self.decoder_scorer()
        if which is None:
            raw = decoder.score_texts(scorer, tokenizer, texts, length_norm=self.params.length_norm)
        else:
            raw = self.shortlisted_logprobs(texts, which)
        finite = np.where(np.isfinite(raw), raw, -np.inf)
        top = finite.max(1, keepdims=True)
        return raw - (top + np.log(np.exp(finite - top).sum(1, keepdims=True)))

    def shortlisted_logprobs(self, texts: Sequence[str], which: np.ndarray) -> np.ndarray:
        import torch

        scorer, tokenizer, _ = self.decoder_scorer()
        rows = decoder.text_ids(tokenizer, scorer.prompt, texts)
        out = np.full((len(rows), len(self.label_keys)), -np.inf, dtype=np.float32)
        extra = int(np.mean([len(ids) for ids in scorer.prompt.label_ids]) * which.shape[1])
        context = scorer.cached_context()
        with torch.inference_mode():
            for batch in decoder.batches_by_tokens([len(r) for r in rows], extra, 2048):
                packed = decoder.pack([rows[i] for i in batch], scorer.prompt, [list(which[i]) for i in batch])
                out[batch] = scorer.sequence_logprobs(packed, scorer.hidden(packed, context)).numpy()
        if self.params.length_norm:
            out = out / scorer.label_lengths()[None, :]
        return out

    # -- predict -----------------------------------------------------------------------------------------------
    def similarities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        features = self.encoder().encode(texts)
        return features @ self.prototypes.T, features

    def encode(self, texts: Sequence[str]) -> Encoded:
        texts = list(texts)
        if self.params.method == "encoder":
            sims, features = self.similarities(texts)
            return Encoded((sims / 0.05).astype(np.float32), features)
        if self.params.method == "decoder":
            return Encoded((self.decoder_logprobs(texts) - self.prior).astype(np.float32))
        sims, features = self.similarities(texts)
        k = min(self.params.shortlist, len(self.label_keys))
        which = np.argsort(-sims, axis=1)[:, :k]
        keep = np.zeros_like(sims, dtype=bool)
        np.put_along_axis(keep, which, True, axis=1)
        corrected = self.decoder_logprobs(texts, which) - self.prior
        combined = standardise(sims, keep) + self.params.decoder_weight * standardise(
            np.where(keep, corrected, 0.0), keep
        )
        outside = standardise(sims, np.ones_like(keep)) - 10.0  # below every shortlisted label, ordered by sims
        return Encoded(np.where(keep, combined, outside).astype(np.float32), features)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts).logits

    def reason(self, text: str, label_key: str) -> str:
        scorer, tokenizer, _ = self.decoder_scorer()
        info = self.taxonomy.get(label_key)
        return decoder.generate_reason(scorer.model, tokenizer, text, info.name or label_key, info.definition)

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.prototypes is not None:
            np.save(folder / PROTOTYPES_FILE, self.prototypes.astype(np.float32))
        record = {
            "label_keys": self.label_keys,
            "params": self.params.model_dump(),
            "prior": None if self.prior is None else [float(x) for x in self.prior],
            "fallback_key": self.taxonomy.fallback_key,
            "taxonomy": [
                {"key": lab.key, "name": lab.name, "definition": lab.definition, "examples": list(lab.examples)}
                for lab in self.taxonomy.labels
            ],
            "fingerprints": self.fingerprints(),
        }
        (folder / ROUTE_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")

    def fingerprints(self) -> dict[str, str]:
        out = {}
        if self.uses_encoder:
            out["encoder"] = self.encoder().spec.fingerprint
        if self.uses_decoder:
            out["decoder"] = self.decoder_scorer()[2].fingerprint
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "route": "zero_shot",
            "method": self.params.method,
            "backbones": {"encoder": self.params.encoder, "decoder": self.params.decoder},
            "fingerprints": self.fingerprints(),
            "prior": self.params.prior,
            "shortlist": self.params.shortlist,
        }


class ZeroShotRoute:
    name: ClassVar[str] = "zero_shot"
    title: ClassVar[str] = "Zero-shot from the taxonomy's names, definitions and examples"
    help: ClassVar[str] = "No labelled data yet: a first suggestion and active learning's cold start."
    Params: ClassVar[type[ZeroShotParams]] = ZeroShotParams
    needs_training: ClassVar[bool] = False
    warm_starts: ClassVar[bool] = False

    def fit(self, train: Examples, val: Examples, params: ZeroShotParams, ctx: FitContext) -> ZeroShotModel:
        model = ZeroShotModel(ctx.label_keys, params, ctx.taxonomy, ctx.model_root)
        model.build()
        return model

    def load(self, folder: Path, ctx: LoadContext) -> ZeroShotModel:
        folder = Path(folder)
        record = json.loads((folder / ROUTE_FILE).read_text(encoding="utf-8"))
        taxonomy = Taxonomy(tuple(ad.decoder_label(item) for item in record["taxonomy"]), record["fallback_key"])
        model = ZeroShotModel(
            record["label_keys"], ZeroShotParams.model_validate(record["params"]), taxonomy, ctx.model_root
        )
        if (folder / PROTOTYPES_FILE).exists():
            model.prototypes = np.load(folder / PROTOTYPES_FILE)
        if record.get("prior") is not None:
            model.prior = np.asarray(record["prior"], dtype=np.float32)
        now = model.fingerprints()
        for kind, fingerprint in record.get("fingerprints", {}).items():
            if now.get(kind) != fingerprint:
                raise BackboneError(f"the {kind} backbone changed since this zero-shot model was built")
        return model


register(ZeroShotRoute())

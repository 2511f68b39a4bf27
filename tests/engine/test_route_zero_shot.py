"""The zero_shot route on tiny random backbones: built from the taxonomy alone, saved, loaded, scored."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.engine.routes import get_route, parse_params
from modeling.engine.routes.base import Examples, FitContext, LabelInfo, LoadContext, Taxonomy
from modeling.engine.routes.zero_shot import standardise

TAXONOMY = Taxonomy(
    (
        LabelInfo("refund", "退款", "买家要求退钱", examples=("我要退款", "钱什么时候退")),
        LabelInfo("shipping", "物流快递", "包裹和快递的进度", examples=("快递到哪了",)),
        LabelInfo("other", "其他"),
    ),
    "other",
)
KEYS = ["refund", "shipping", "other"]
TEXTS = ["退款", "快递包裹到了吗", "你好"]
NOTHING = Examples([], [])


def build(method: str, tiny_encoder, tiny_decoder, **overrides):
    p = parse_params(
        "zero_shot",
        {"method": method, "encoder": tiny_encoder.path, "decoder": tiny_decoder.path, "dtype": "fp32", **overrides},
    )
    return get_route("zero_shot").fit(NOTHING, NOTHING, p, FitContext(list(KEYS), TAXONOMY))


def test_zero_shot_needs_no_training():
    assert get_route("zero_shot").needs_training is False


@pytest.mark.parametrize("method", ["combined", "encoder", "decoder"])
def test_fit_save_load_logits(method, tiny_encoder, tiny_decoder, tmp_path):
    model = build(method, tiny_encoder, tiny_decoder, shortlist=2)
    logits = model.logits(TEXTS)
    assert logits.shape == (len(TEXTS), len(KEYS)) and np.isfinite(logits).all()
    model.save(tmp_path / "zs")
    loaded = get_route("zero_shot").load(tmp_path / "zs", LoadContext())
    np.testing.assert_allclose(loaded.logits(TEXTS), logits, rtol=1e-4, atol=1e-4)
    assert loaded.describe()["method"] == method


def test_combined_keeps_labels_outside_the_shortlist_below_it(tiny_encoder, tiny_decoder):
    model = build("combined", tiny_encoder, tiny_decoder, shortlist=2)
    sims, _ = model.similarities(TEXTS)
    logits = model.logits(TEXTS)
    for row_sims, row_logits in zip(sims, logits, strict=True):
        outside = int(np.argmin(row_sims))
        assert row_logits[outside] < np.delete(row_logits, outside).min()


def test_taxonomy_prior_is_removed_from_decoder_scores(tiny_encoder, tiny_decoder):
    plain = build("decoder", tiny_encoder, tiny_decoder, prior="none")
    corrected = build("decoder", tiny_encoder, tiny_decoder, prior="taxonomy")
    np.testing.assert_allclose(corrected.logits(TEXTS), plain.logits(TEXTS) - corrected.prior[None, :], rtol=1e-4)
    assert np.abs(corrected.prior).sum() > 0


def test_encoder_prototypes_are_unit_vectors(tiny_encoder, tiny_decoder):
    model = build("encoder", tiny_encoder, tiny_decoder)
    np.testing.assert_allclose(np.linalg.norm(model.prototypes, axis=1), 1.0, rtol=1e-5)


def test_standardise_uses_only_kept_entries():
    scores = np.array([[1.0, 2.0, 3.0, 100.0]])
    keep = np.array([[True, True, True, False]])
    np.testing.assert_allclose(standardise(scores, keep)[0, :3], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert standardise(scores, keep)[0, 3] == 0.0

"""Perturbations (seeded, label-keeping) and the robustness report on predictors whose figures are known."""

from __future__ import annotations

import re

import pytest
from pypinyin import Style, lazy_pinyin

from modeling.engine.evaluation.robustness import (
    PERTURBATIONS,
    homophone_table,
    is_chinese,
    perturb,
    robustness_report,
)

TEXTS = [
    "我想咨询一下运费险怎么赔付",
    "退款什么时候能到账",
    "订单一直显示待发货",
    "优惠券为什么用不了",
    "how do i reset my password",
    "book a table for two tonight",
    "what is the weather like in paris",
    "cancel my subscription please",
]
LABELS = ["insurance", "refund", "shipping", "coupon", "account", "booking", "weather", "account"]
_SCRIPT = re.compile(r"[A-Za-z\u4e00-\u9fff]")


def script_of_first_letter(texts: list[str]) -> list[str]:
    """A predictor every perturbation leaves right: fillers follow the text's language, emoji and
    punctuation are no letters, typos keep the script, truncation keeps the start, concat appends."""
    out = []
    for text in texts:
        first = _SCRIPT.search(text)
        out.append("zh" if first and "\u4e00" <= first.group() <= "\u9fff" else "en")
    return out


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_perturbations_are_deterministic_per_seed_and_change_every_text(kind):
    first, again, other = (perturb(TEXTS, LABELS, kind, seed) for seed in (0, 0, 1))
    assert first == again
    assert len(first) == len(TEXTS)
    assert all(a != b for a, b in zip(first, TEXTS, strict=True))
    if kind != "truncate":  # truncation keeps a fixed share: the same for every seed by design
        assert first != other


def test_chinese_typos_are_homophones_and_english_typos_stay_one_edit_per_word():
    typos = perturb(TEXTS, LABELS, "typos", seed=3)
    for clean, noisy in zip(TEXTS[:4], typos[:4], strict=True):
        assert len(clean) == len(noisy)
        swapped = [(a, b) for a, b in zip(clean, noisy, strict=True) if a != b]
        assert swapped
        for a, b in swapped:
            assert lazy_pinyin(a, style=Style.NORMAL) == lazy_pinyin(b, style=Style.NORMAL)
    for clean, noisy in zip(TEXTS[4:], typos[4:], strict=True):
        words, noisy_words = clean.split(), noisy.split()
        assert len(words) == len(noisy_words)
        changed = [(a, b) for a, b in zip(words, noisy_words, strict=True) if a != b]
        assert changed
        for a, b in changed:  # a dropped letter, or one letter replaced (keyboard neighbour)
            assert len(b) == len(a) - 1 or (len(b) == len(a) and sum(x != y for x, y in zip(a, b, strict=True)) == 1)


def test_homophone_table_groups_characters_by_their_toneless_reading():
    table = homophone_table()
    assert len(table) > 300
    assert {"是", "事", "市"} <= set(table["shi"])
    for chars in list(table.values())[:50]:
        readings = {lazy_pinyin(ch, style=Style.NORMAL)[0] for ch in chars}
        assert len(chars) > 1 and len(readings) == 1


def test_concat_appends_a_shorter_piece_of_a_text_with_another_label():
    joined = perturb(TEXTS, LABELS, "concat", seed=0)
    for i, text in enumerate(joined):
        assert text.startswith(TEXTS[i])
        tail = text[len(TEXTS[i]) :].lstrip("，, ")
        partners = [j for j, other in enumerate(TEXTS) if other.startswith(tail)]
        assert partners and all(LABELS[j] != LABELS[i] for j in partners)
        assert len(tail) <= max(2, len(TEXTS[i]) // 2)


def test_noise_and_truncation_keep_the_language():
    for kind in ("noise", "truncate"):
        for clean, noisy in zip(TEXTS, perturb(TEXTS, LABELS, kind, seed=0), strict=True):
            assert is_chinese(clean) == is_chinese(noisy)


def test_report_of_a_predictor_the_perturbations_cannot_fool():
    labels = script_of_first_letter(TEXTS)
    report = robustness_report(script_of_first_letter, TEXTS, labels, seed=0)
    assert set(report) == {"clean", *PERTURBATIONS}
    for kind in PERTURBATIONS:
        assert report[kind]["macro_f1"] == report[kind]["accuracy"] == 1.0
        assert report[kind]["drop_macro_f1"] == report[kind]["drop_accuracy"] == 0.0
        assert report[kind]["n"] == len(TEXTS) and report[kind]["changed"] == 1.0


def test_report_of_a_lookup_that_knows_only_the_clean_texts():
    known = dict(zip(TEXTS, LABELS, strict=True))
    report = robustness_report(lambda batch: [known.get(t, "nothing") for t in batch], TEXTS, LABELS)
    assert report["clean"] == {"macro_f1": 1.0, "accuracy": 1.0, "n": len(TEXTS)}
    for kind in PERTURBATIONS:
        assert report[kind]["accuracy"] == 0.0 and report[kind]["drop_accuracy"] == 1.0
        assert report[kind]["drop_macro_f1"] == 1.0


def test_report_of_a_constant_predictor():
    report = robustness_report(lambda batch: ["account"] * len(batch), TEXTS, LABELS)
    # "account" is right on 2 of 8: precision 2/8, recall 1, F1 0.4; the 6 other gold labels score 0.
    for kind in ("clean", *PERTURBATIONS):
        assert report[kind]["accuracy"] == 0.25
        assert report[kind]["macro_f1"] == pytest.approx(0.4 / 7, abs=1e-6)
    assert all(report[kind]["drop_macro_f1"] == 0.0 for kind in PERTURBATIONS)


def test_report_rejects_a_predictor_that_loses_texts():
    with pytest.raises(ValueError, match="returned 1 labels for 8 texts"):
        robustness_report(lambda batch: ["account"], TEXTS, LABELS)

"""Plots show Chinese label names even where the system has no CJK font: the font comes from a Python package."""

from __future__ import annotations

import warnings

import pytest
from matplotlib import font_manager

from modeling.engine.evaluation import plots

LABELS = ["旅行", "支付", "物流", "售后", "账户", "其他"]


@pytest.fixture
def no_system_cjk_font(monkeypatch):
    """This process sees only fonts without CJK glyphs, as on a bare server."""
    manager = font_manager.fontManager
    bare = [f for f in manager.ttflist if not any(word in f.name for word in ("CJK", "WenQuanYi", "SimHei", "Hei"))]
    monkeypatch.setattr(manager, "ttflist", bare)
    manager._findfont_cached.cache_clear()
    plots.cjk_font_family.cache_clear()
    yield
    plots.cjk_font_family.cache_clear()
    manager._findfont_cached.cache_clear()


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_chinese_labels_render_without_missing_glyphs(no_system_cjk_font, fmt):
    matrix = [[3 if i == j else 1 for j in range(len(LABELS))] for i in range(len(LABELS))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.confusion_matrix_plot(matrix, LABELS, fmt=fmt)
    missing = [str(w.message) for w in caught if "Glyph" in str(w.message)]
    assert not missing, missing[:3]

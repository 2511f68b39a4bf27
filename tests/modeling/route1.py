"""Shared helpers for route-1 tests: a small synthetic scene dataset, a published taxonomy, gold items."""

from __future__ import annotations

import itertools
from pathlib import Path

from labeling.models import Item, Project
from labeling.services.gold import set_gold
from labeling.services.items import get_or_create_item
from labeling.services.taxonomy import add_label, publish_draft

# Each scene's texts share scene-specific keywords, so a TF-IDF or hybrid head can learn them even on top of
# a randomly initialised backbone. Generated, not taken from any dataset.
SCENE_WORDS = {
    "支付": ["付款失败", "扣款两次", "支付不了", "付钱没反应"],
    "物流": ["快递没到", "物流不动", "包裹丢了", "配送太慢"],
    "旅行": ["机票改签", "酒店订单", "火车票退票", "航班延误"],
    "账户": ["密码忘了", "账号被封", "登录不上", "手机号换绑"],
    "售后": ["退货申请", "换货流程", "维修太慢", "客服不理"],
}
OPENERS = ["我的", "请问", "为什么", "怎么", "又是"]
CLOSERS = ["了", "呢", "啊", "怎么办", "？"]
DEMO_LABELS = list(SCENE_WORDS)


def scene_texts(per_label: int = 20) -> list[tuple[str, str]]:
    rows = []
    for label, words in SCENE_WORDS.items():
        combos = itertools.product(OPENERS, words, CLOSERS)
        for i, (opener, word, closer) in enumerate(combos):
            if i >= per_label:
                break
            rows.append((f"{opener}{word}{closer}", label))
    other = [f"{o}天气不错{c}" for o in OPENERS for c in CLOSERS][: max(4, per_label // 2)]
    rows += [(text, "其他") for text in other]
    return rows


def publish_scene_taxonomy(project: Project):
    draft = project.taxonomy_versions.get(status="draft")
    for i, key in enumerate(DEMO_LABELS):
        add_label(draft=draft, data={"key": key, "name": key, "hotkey": str(i + 1)})
    return publish_draft(draft=draft).version


def add_gold_items(project: Project, rows: list[tuple[str, str]], taxonomy) -> list[Item]:
    """Creates items with gold labels; every 5th goes to val, the next to test, the rest to train."""
    items = []
    for i, (text, label) in enumerate(rows):
        item, _ = get_or_create_item(project=project, text=text, source="test")
        item.split = {0: "val", 1: "test"}.get(i % 5, "train")
        item.save(update_fields=["split"])
        set_gold(item=item, label_key=label, taxonomy=taxonomy, method="imported")
        items.append(item)
    return items


def tiny_params(backbone: Path) -> dict:
    return {"backbone": str(backbone), "max_epochs": 30}


def start_and_run(project, **kwargs):
    """Starts a run as a request would: its task is sent once the run is committed (eager in tests)."""
    from django.test import TestCase

    from modeling.services import training

    with TestCase.captureOnCommitCallbacks(execute=True):
        run = training.start_training_run(project=project, **kwargs)
    run.refresh_from_db()
    return run

"""Builders shared by the workspace and browser tests: a published taxonomy and a few feedback texts."""

from __future__ import annotations

from labeling.models import Item, Project, TaxonomyVersion
from labeling.services.items import get_or_create_item
from labeling.services.taxonomy import add_label, get_or_create_draft, publish_draft

SCENES = [
    ("旅行", "Travel", "1", "酒店、机票、行程相关。"),
    ("支付", "Payment", "2", "付款、扣款、退款到账相关。"),
    ("物流", "Logistics", "3", "快递、配送、签收相关。"),
    ("售后", "After-sales", "4", "退换货、维修、质量问题。"),
    ("账户", "Account", "5", "登录、密码、实名认证。"),
]

TEXTS = [
    "酒店订好了却说没有房间",
    "付款成功但是订单显示未支付",
    "快递三天了还没到",
    "买的耳机坏了想退货",
    "登录一直提示密码错误",
    "机票改签手续费太贵了",
    "银行卡被扣了两次钱",
    "物流信息一直不更新",
    "The refund never reached my card",
    "Cannot log in after changing my phone",
    "客服电话一直打不通",
    "配送员把包裹放在门口丢了",
]


def publish_scenes(project: Project) -> TaxonomyVersion:
    draft = get_or_create_draft(project=project)
    for order, (key, name, hotkey, definition) in enumerate(SCENES):
        add_label(
            draft=draft,
            data={
                "key": key,
                "name": f"{key} {name}",
                "hotkey": hotkey,
                "order": order,
                "definition": definition,
                "decision_rules": f"只要主要诉求是{key}就选它。",
            },
        )
    return publish_draft(draft=draft).version


def make_items(project: Project, texts: list[str] | None = None, source: str = "test") -> list[Item]:
    return [get_or_create_item(project=project, text=text, source=source)[0] for text in texts or TEXTS]


def numbered_texts(n: int) -> list[str]:
    return [f"测试反馈第{i}条：订单问题{'啊' * (i % 7)}" for i in range(n)]

import pytest

from labeling.pii import mask_pii

# A syntactically valid Chinese ID number (checksum correct) and one with a wrong check digit.
VALID_ID = "11010519491231002X"
BAD_CHECKSUM_ID = "110105194912310021"


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的手机号是13812345678，请回电", "我的手机号是<PHONE>，请回电"),
        ("电话 +86 138-1234-5678 找王先生", "电话 <PHONE> 找王先生"),
        ("电话 0086 13912345678", "电话 <PHONE>"),
        ("手机 139 1234 5678", "手机 <PHONE>"),
        ("全角 １３８１２３４５６７８ 也算", "全角 <PHONE> 也算"),
        ("座机010-12345678转分机", "座机<PHONE>转分机"),
        ("客服打我(0755) 1234567没人接", "客服打我<PHONE>没人接"),
        ("call me at +1 415-555-0132 please", "call me at <PHONE> please"),
        ("UK office +44 20 7946 0958", "UK office <PHONE>"),
        ("my number is (415) 555-0132", "my number is <PHONE>"),
    ],
)
def test_phone_numbers_are_masked(text, expected):
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("邮箱 zhang.san@qq.com 谢谢", "邮箱 <EMAIL> 谢谢"),
        ("email: John.Doe+shop@example.co.uk asap", "email: <EMAIL> asap"),
        ("发到abc_123＠163.com了吗", "发到<EMAIL>了吗"),
    ],
)
def test_emails_are_masked(text, expected):
    assert mask_pii(text) == expected


def test_id_card_needs_a_valid_checksum():
    assert mask_pii(f"身份证号{VALID_ID}实名认证失败") == "身份证号<ID_CARD>实名认证失败"
    assert mask_pii(f"身份证号{VALID_ID.lower()}") == "身份证号<ID_CARD>"
    # Wrong check digit: not an ID card (and not Luhn-valid), so the digits stay.
    assert mask_pii(f"编号{BAD_CHECKSUM_ID}") == f"编号{BAD_CHECKSUM_ID}"


def test_bank_card_needs_luhn():
    assert mask_pii("卡号4111111111111111扣款两次") == "卡号<BANK_CARD>扣款两次"
    assert mask_pii("card 4111 1111 1111 1111 was charged") == "card <BANK_CARD> was charged"
    assert mask_pii("卡号6222-0212-3456-7894") == "卡号<BANK_CARD>"
    # Same length, fails Luhn: left alone.
    assert mask_pii("流水4111111111111112") == "流水4111111111111112"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("订单号：2023100112345678 一直没发货", "订单号：<ORDER_ID> 一直没发货"),
        ("订单编号是 E20231001889900 麻烦查下", "订单编号是 <ORDER_ID> 麻烦查下"),
        ("快递单号SF1234567890123到哪了", "快递单号<ORDER_ID>到哪了"),
        ("order #A12345 never arrived", "order #<ORDER_ID> never arrived"),
        ("My Order No. 98765432 is late", "My Order No. <ORDER_ID> is late"),
        # A Luhn-valid number after 订单 is still an order number.
        ("订单4111111111111111", "订单<ORDER_ID>"),
    ],
)
def test_order_numbers_are_masked_after_their_keyword(text, expected):
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "价格¥1299.00，2023-10-01下单，买了3件",
        "退款 ¥ 58.5 还没到账，已经等了 15 天",
        "2023年10月1日 10:30 到的货",
        "订单 3 件只到了 2 件",
        "order 2 items, got 1",
        "order #A1234",
        "优惠券满300减50",
        "版本 v2.3.15 闪退",
        "20231001 的航班 CA1234 延误",
        "rated 4.5 stars, paid $25.99 on 2024-03-05",
        "验证码 123456 收不到",
        "客服热线 400-820-8820 打不通",
    ],
)
def test_prices_dates_and_short_numbers_are_not_masked(text):
    assert mask_pii(text) == text


def test_several_kinds_in_one_text():
    text = f"我叫张三，电话13812345678，邮箱a@b.cn，身份证{VALID_ID}，订单号 202401019999"
    assert mask_pii(text) == "我叫张三，电话<PHONE>，邮箱<EMAIL>，身份证<ID_CARD>，订单号 <ORDER_ID>"


def test_masking_is_idempotent():
    once = mask_pii("电话13812345678 订单号 202401019999")
    assert mask_pii(once) == once

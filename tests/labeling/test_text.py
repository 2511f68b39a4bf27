from labeling.text import near_duplicate_key, normalize_text, text_hash


def test_normalize_folds_full_width_and_collapses_whitespace():
    assert normalize_text("  ＡＢＣ１２３\u3000退款\t\n  没到  ") == "ABC123 退款 没到"


def test_hash_is_sha256_of_normalised_text():
    assert text_hash("退款") == text_hash(normalize_text(" 退款 "))
    assert len(text_hash("x")) == 64
    assert text_hash("退款") != text_hash("退货")


def test_near_duplicate_key_ignores_digits_punctuation_case_and_placeholders():
    a = near_duplicate_key(normalize_text("订单<ORDER_ID>还没到！！ 3天了"))
    b = near_duplicate_key(normalize_text("订单 还没到... 5 天了"))
    assert a == b == "订单还没到天了"
    assert near_duplicate_key("Refund NOW") == near_duplicate_key("refund now!")
    assert near_duplicate_key("退款") != near_duplicate_key("退货")


def test_near_duplicate_key_keeps_texts_without_letters_apart():
    assert near_duplicate_key("123") != near_duplicate_key("456")

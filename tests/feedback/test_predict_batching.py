"""Concurrent predict calls on a real (tiny) published model: batched forwards give each caller the answers a
call of its own would have given."""

from __future__ import annotations

import threading

import pytest

from modeling.services import batching
from modeling.services.serving import get_serving_model, predict_with

TEXTS = [
    "快递三天了还没到",
    "付款成功但订单显示未支付",
    "退货申请一直没人处理",
    "账号登录不上",
    "发票开错了",
    "客服不回消息",
]


def test_concurrent_calls_are_batched_and_answer_like_single_calls(published_model, settings):
    settings.PREDICT_BATCH_MAX_TEXTS, settings.PREDICT_BATCH_DELAY_MS = 64, 20.0
    model = get_serving_model(published_model.project)
    alone = {text: predict_with(model, [text])[0] for text in TEXTS}
    batcher = batching.batcher_for(model.predictor)
    before = batcher.batches_run
    answers: dict[int, object] = {}
    barrier = threading.Barrier(len(TEXTS) * 3)

    def client(index: int) -> None:
        barrier.wait()
        answers[index] = predict_with(model, [TEXTS[index % len(TEXTS)]])[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(TEXTS) * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == len(threads)
    assert batcher.batches_run - before < len(threads)  # some calls shared a forward
    assert batcher.largest_batch > 1
    for index, answer in answers.items():
        single = alone[TEXTS[index % len(TEXTS)]]
        assert answer.label == single.label and answer.abstained == single.abstained
        assert answer.confidence == pytest.approx(single.confidence, abs=1e-3)


def test_batching_off_runs_each_call_itself(published_model, settings):
    settings.PREDICT_BATCH_MAX_TEXTS = 0
    model = get_serving_model(published_model.project)
    batcher = batching.batcher_for(model.predictor)
    before = batcher.batches_run
    assert predict_with(model, [TEXTS[0]])[0].label
    assert batcher.batches_run == before

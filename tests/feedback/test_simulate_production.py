"""`manage.py simulate_production`: its JSON contract, on a tiny backbone and a stream whose second half holds
a scene the first model never saw."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from labeling.models import Project
from modeling.models import ModelVersion
from tests.modeling.route1 import scene_texts

KEYS = {
    "batch", "champion", "challenger", "challenger_share", "accuracy", "macro_f1", "abstain_rate",
    "estimated_accuracy", "realised_accuracy", "drift_score", "drift_alert",
}  # fmt: skip


def write(path, rows) -> None:
    path.write_text("\n".join(json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in rows))


@pytest.mark.django_db(transaction=True)
def test_simulation_writes_the_contract_and_cleans_up(tmp_path, tiny_backbone):
    rows = scene_texts(20)
    known = [row for row in rows if row[1] != "售后"]
    train, val = known[::2], known[1::4]
    stream = known[3::4] * 2 + [row for row in rows if row[1] == "售后"] * 2
    for name, data in (("train", train), ("val", val), ("stream", stream)):
        write(tmp_path / f"{name}.jsonl", data)
    params = json.dumps({"backbone": str(tiny_backbone), "max_epochs": 20})

    call_command(
        "simulate_production", "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
        "--stream", str(tmp_path / "stream.jsonl"), "--feedback-rate", "0.5", "--batch", "40",
        "--params", params, "--min-labelled", "3", "--json", str(tmp_path / "out.json"),
    )  # fmt: skip

    result = json.loads((tmp_path / "out.json").read_text())
    batches = result["batches"]
    assert len(batches) == -(-len(stream) // 40) and all(set(row) == KEYS for row in batches)
    assert [row["batch"] for row in batches] == list(range(1, len(batches) + 1))
    assert batches[0]["champion"] == 1 and batches[0]["challenger"] is None
    assert batches[1]["challenger"] == 2 and batches[1]["challenger_share"] == pytest.approx(0.10)
    for row in batches:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["estimated_accuracy"] <= 1.0
        assert row["realised_accuracy"] is not None
    assert not Project.objects.filter(slug__startswith="simulation-").exists()
    assert not ModelVersion.objects.exists()


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("simulate_production", "--train", "nope.jsonl", "--val", "v.jsonl", "--stream", "s.jsonl")

"""metrics.jsonl append / read / truncate."""

from __future__ import annotations

from qkv.train.metrics_log import MetricsLog


def test_append_read_truncate(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in (10, 20, 30):
        log.append({"variant": "a", "step": step, "split": "train", "loss": 1.0 / step})
    log.append({"variant": "b", "step": 10, "split": "train", "loss": float("nan")})
    assert [r["step"] for r in log.read()] == [10, 20, 30, 10]
    assert log.read()[-1]["loss"] == "nan"
    log.truncate_after(15, variant="a")
    assert [(r["variant"], r["step"]) for r in log.read()] == [("a", 10), ("b", 10)]
    log.truncate_after(-1, variant="b")
    assert [(r["variant"], r["step"]) for r in log.read()] == [("a", 10)]


def test_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "m.jsonl"
    log = MetricsLog(path)
    log.append({"variant": "a", "step": 1})
    with path.open("a") as f:
        f.write('{"variant": "a", "st')
    assert log.read() == [{"variant": "a", "step": 1}]

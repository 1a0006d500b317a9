"""The HTML report: content, escaping, and rendering in headless Chromium (images load, not blank)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from qkv.experiments.runner import run_experiment
from qkv.viz.report import find_runs, render_report, write_report

TINY = ["variants=global/dot,local-p/dot", "train_size=200", "valid_size=20", "test_size=30", "model.hidden=16",
        "model.embed_dim=8", "train.max_steps=20", "train.eval_every=10", "train.checkpoint_every=10",
        "train.batch_size=16"]


@pytest.fixture(scope="module")
def tour_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    quiet = dict(progress=False, log=lambda m: None, quick=True)
    run_experiment("seq2seq-attention", overrides=TINY, out=root / "seq2seq-attention", **quiet)
    run_experiment("scaled-dot", overrides=["num_queries=100", "max_log2_dk=4"], out=root / "scaled-dot", **quiet)
    empty = root / "no-data"
    empty.mkdir()
    run_experiment("translation-fra-eng", data_dir=str(empty), out=root / "translation-fra-eng", offline=True,
                   **quiet)
    write_report(root, title="test <tour>")
    return root


def test_report_content(tour_dir):
    assert [p.name for p in find_runs(tour_dir)] == ["scaled-dot", "seq2seq-attention", "translation-fra-eng"]
    page = (tour_dir / "index.html").read_text()
    assert "test &lt;tour&gt;" in page  # escaped
    for needle in ("quick run", "min_exact_match_global", "&gt;= 0.99", "not met (quick run)", "learning_curves.png",
                   "quick-run target", "min_exact_match<", "&gt;= 0.9<",
                   "seq2seq-attention/figures/attention_0.png", "scaled-dot/figures/scaled_dot.png", "skipped",
                   "--data-dir PATH", "Config", "Held-out dates per variant"):
        assert needle in page, needle
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (tour_dir / src).is_file(), src
    single = render_report(tour_dir / "scaled-dot")
    assert 'src="figures/scaled_dot.png"' in single
    with pytest.raises(FileNotFoundError, match="no run found"):
        render_report(tour_dir / "no-data")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("CI is set but Chromium is not installed (scripts/test.sh installs Debian's chromium)")
    pytest.skip("headless Chromium not installed (apt-get install chromium)")


def _browser(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def _image_counts(dom: str) -> tuple[int, int]:
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, f"the report's load script did not run: {body.group(0)}"
    return int(loaded.group(1)), int(total.group(1))


def test_report_renders_in_headless_chromium(tour_dir, tmp_path):
    import matplotlib.pyplot as plt

    url = (tour_dir / "index.html").resolve().as_uri()
    dom = _browser(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded, total = _image_counts(dom.stdout)
    assert total >= 5 and loaded == total
    shot = tmp_path / "shot.png"
    res = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = plt.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not blank
    assert (pixels.min(-1) < 0.9).mean() > 0.05  # a real share of the page is drawn, not white

    # the check can fail: a missing image is counted as not loaded
    broken = tmp_path / "broken"
    shutil.copytree(tour_dir, broken)
    (broken / "scaled-dot" / "figures" / "scaled_dot.png").unlink()
    dom = _browser(tmp_path, "--dump-dom", (broken / "index.html").resolve().as_uri())
    loaded, total = _image_counts(dom.stdout)
    assert loaded == total - 1
    assert "image failed to load" in dom.stdout


def test_summary_files_are_json(tour_dir):
    s = json.loads((tour_dir / "seq2seq-attention" / "summary.json").read_text())
    assert s["status"] == "ok" and s["quick"] is True
    assert set(s["metrics"]) >= {"exact_match/global/dot", "alignment/local-p/dot", "min_exact_match_global"}
    assert s["targets"][0]["met"] is (s["metrics"]["min_exact_match_global"] >= 0.99)

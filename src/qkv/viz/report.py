"""The HTML report: one ``index.html`` over one run directory or a tour of them.

Per experiment it shows the description, the run kind (quick or full), the final metrics next
to the experiment's targets (and whether each is met), the Config, result tables, and the
figures (learning curves, attention heatmaps with tokens on both axes). Images are files beside
the report, referenced by relative paths, so the directory can be copied or zipped as a whole.

A small inline script marks images that fail to load (and writes the counts into
``<body data-images-loaded=... data-images-total=...>``, which the browser test reads).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from qkv.train.io import atomic_write_text

__all__ = ["ReportError", "find_runs", "read_summary", "render_report", "write_report"]


class ReportError(ValueError):
    """A saved result file (``summary.json``, ``config.json``) cannot be read; the message names it."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path} is not a readable JSON file ({e}); rerun the experiment or delete the file") \
            from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} does not hold a JSON object (got {type(data).__name__})")
    return data


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/summary.json`` as a dict.

    Raises:
        ReportError: the file is missing, unreadable, not JSON or not an object (the message names it).
    """
    return _read_json(Path(run_dir) / "summary.json")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}
nav{padding:10px 28px;background:#e8edf3}nav a{margin-right:16px;color:#1f3a5f}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:18px 0}
h2{margin:0 0 4px;font-size:19px}.desc{color:#4a5561;margin:0 0 10px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;margin-left:6px;vertical-align:middle}
.ok{background:#d8f3dc;color:#1b5e20}.bad{background:#ffe0e0;color:#8b0000}.quick{background:#fff3cd;color:#7a5b00}
.skipped{background:#e2e3e5;color:#383d41}.failed{background:#ffe0e0;color:#8b0000}.na{background:#eef;color:#335}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #dde3ea;padding:4px 9px;text-align:left}th{background:#f0f3f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f4f6f8;padding:8px 10px;border-radius:6px;font-size:12px;overflow-x:auto;white-space:pre-wrap}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #e3e7ec;background:#fff}
figcaption{font-size:13px;color:#4a5561}img.broken{outline:3px solid #c00}
.warn{color:#8b0000;font-weight:600}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images), ok = 0;
  imgs.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok += 1; }
    else { img.classList.add('broken'); img.insertAdjacentHTML('afterend',
      '<p class="warn">image failed to load: ' + img.getAttribute('src') + '</p>'); }
  });
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
});
"""


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root``: ``root`` itself if it holds ``summary.json``, else its subdirectories that do."""
    root = Path(root)
    if (root / "summary.json").exists():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "summary.json").exists()) if root.is_dir() else []


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(_fmt(v))}</td>' if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{html.escape(_fmt(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _verdict(t: dict[str, Any], quick: bool) -> str:
    met = t.get("met")
    if met is None:
        return '<span class="badge na">not measured</span>'
    if met:
        return '<span class="badge ok">met</span>'
    if quick and not t.get("quick"):
        return '<span class="badge quick">not met (quick run)</span>'
    return '<span class="badge bad">not met</span>'


def _goal(op: str, value: float) -> str:
    return f"{html.escape(op)} {value:.4g}"


def _targets_html(summary: dict[str, Any]) -> str:
    """Targets against the measured values; a quick run shows its quick targets next to the full run's."""
    targets = summary.get("targets") or []
    if not targets:
        return ""
    quick = bool(summary.get("quick"))
    has_quick = any(t.get("quick") for t in targets)
    rows = []
    for t in targets:
        measured = t.get("measured")
        full = t.get("full") if t.get("quick") else {"op": t["op"], "value": t["value"]}
        cells = [f"<td>{html.escape(t['metric'])}</td>"]
        if has_quick:
            cells.append(f"<td>{_goal(t['op'], t['value']) if t.get('quick') else '—'}</td>")
        cells.append(f"<td>{_goal(full['op'], full['value']) if full else '—'}</td>")
        cells.append(f'<td class="num">{html.escape(_fmt(measured)) if measured is not None else "—"}</td>')
        cells.append(f"<td>{_verdict(t, quick)}</td><td>{html.escape(t.get('description', ''))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    if quick and has_quick:
        note = ("<p class='desc'>This is a <b>quick run</b>: its verdicts are against the quick-run targets; "
                "the full-run targets (<code>qkv run NAME</code> without <code>--quick</code>) are shown beside "
                "them.</p>")
    elif quick:
        note = ("<p class='desc'>This is a <b>quick run</b>: targets are stated for the full run "
                "(<code>qkv run NAME</code> without <code>--quick</code>) and are not expected to be met here.</p>")
    else:
        note = ""
    head = ("<th>metric</th>" + ("<th>quick-run target</th>" if has_quick else "")
            + "<th>target (full run)</th><th>measured</th><th>verdict</th><th></th>")
    return "<h3>Metrics against target</h3>" + note + f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def _section(run_dir: Path, rel: str) -> tuple[str, str, str]:
    summary = read_summary(run_dir)
    config = {}
    if (run_dir / "config.json").exists():
        config = _read_json(run_dir / "config.json")
    name = str(summary.get("experiment", run_dir.name))
    anchor = "exp-" + "".join(c if c.isalnum() else "-" for c in name)
    status = summary.get("status", "ok")
    badges = [f'<span class="badge {"quick" if summary.get("quick") else "ok"}">'
              f'{"quick run" if summary.get("quick") else "full run"}</span>']
    if status != "ok":
        badges.append(f'<span class="badge {html.escape(status)}">{html.escape(status)}</span>')
    else:
        checked = [t for t in summary.get("targets", []) if t.get("checked", True)]
        verdicts = [t.get("met") for t in checked]
        kind = "quick-run targets" if any(t.get("quick") for t in checked) else "targets"
        if verdicts and all(v is True for v in verdicts):
            badges.append(f'<span class="badge ok">{kind} met</span>')
        elif verdicts:
            soft = summary.get("quick") and kind == "targets"  # a quick run measured against full-run targets
            badges.append(f'<span class="badge {"quick" if soft else "bad"}">'
                          f'{sum(v is True for v in verdicts)}/{len(verdicts)} {kind} met</span>')
    parts = [f'<section id="{anchor}"><h2>{html.escape(name)}{"".join(badges)}</h2>',
             f'<p class="desc">{html.escape(str(summary.get("description", "")))}'
             f' — seed {summary.get("seed")}, {summary.get("elapsed_s", 0):.1f} s</p>']
    for note in summary.get("notes", []):
        parts.append(f"<pre>{html.escape(str(note))}</pre>")
    parts.append(_targets_html(summary))
    metrics = summary.get("metrics") or {}
    if metrics:
        parts.append("<h3>Final metrics</h3>" + _table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    for t in summary.get("tables", []):
        parts.append(f"<h3>{html.escape(t['title'])}</h3>" + _table(t["columns"], t["rows"]))
    for f in summary.get("figures", []):
        src = html.escape(f"{rel}{f['path']}" if rel else f["path"], quote=True)
        parts.append(f'<figure><img src="{src}" alt="{html.escape(f["caption"], quote=True)}" loading="eager">'
                     f"<figcaption>{html.escape(f['caption'])}</figcaption></figure>")
    if config:
        parts.append("<details open><summary>Config</summary><pre>"
                     + html.escape(json.dumps(config.get("config", config), indent=2)) + "</pre></details>")
    parts.append("</section>")
    return name, anchor, "\n".join(parts)


def render_report(root: str | Path, *, title: str = "qkv experiment report") -> str:
    """The report's HTML for the runs found under ``root`` (see :func:`find_runs`)."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"no run found in {str(root)!r} (looked for summary.json in it and its subdirectories)"
        )
    sections = []
    for run_dir in runs:
        rel = "" if run_dir == root else f"{run_dir.relative_to(root).as_posix()}/"
        sections.append(_section(run_dir, rel))
    nav = "".join(f'<a href="#{a}">{html.escape(n)}</a>' for n, a, _ in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1>"
        f"<p>{len(sections)} experiment(s) from {html.escape(str(root))}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(s for _, _, s in sections)}</main></body></html>\n"
    )


def write_report(root: str | Path, *, title: str = "qkv experiment report") -> Path:
    """Write ``root/index.html`` (atomically) and return its path."""
    root = Path(root)
    path = root / "index.html"
    atomic_write_text(path, render_report(root, title=title))
    return path

"""Words highlighted by their attention weight: an HTML fragment and a matplotlib PNG of coloured text.

A *block* is a document with weights: ``{"title": str, "sentences": [[word, ...], ...], "weights":
[[w, ...], ...], "sentence_weights": [w, ...] | None, "evidence": [[bool, ...], ...] | None}``. Word
colours are the weight divided by the document's largest word weight (so each block uses the full
scale); sentence weights (HAN) colour a box before each sentence. Planted evidence is underlined (HTML)
or bold (PNG).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from qkv.train.io import atomic_write_text
from qkv.viz.mpl import pyplot

__all__ = ["text_html", "write_text_figure"]

_WORD_RGB = (220, 40, 40)
_SENT_RGB = (40, 90, 220)


def _scale(values: list[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def text_html(blocks: list[dict[str, Any]], *, title: str = "attention over words") -> str:
    """A standalone HTML page: each word on a background ``rgba(r, g, b, w / max w)``."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}p{line-height:1.9;margin:.2em 0}"
             "span.w{padding:1px 2px;border-radius:3px}span.s{display:inline-block;width:3.2em;font-size:.8em;"
             "text-align:center;margin-right:.5em;border-radius:3px}u{text-decoration-thickness:2px}</style>"
             f"</head><body><h1>{html.escape(title)}</h1>"]
    for block in blocks:
        parts.append(f"<h3>{html.escape(block['title'])}</h3>")
        top = _scale([w for sent in block["weights"] for w in sent])
        sw = block.get("sentence_weights")
        stop = _scale(sw) if sw else 1.0
        evidence = block.get("evidence")
        for i, (words, weights) in enumerate(zip(block["sentences"], block["weights"], strict=True)):
            line = []
            if sw:
                a = sw[i] / stop
                line.append(f'<span class="s" style="background: rgba({_SENT_RGB[0]}, {_SENT_RGB[1]}, '
                            f'{_SENT_RGB[2]}, {a:.3f})">{sw[i]:.2f}</span>')
            for j, (word, w) in enumerate(zip(words, weights, strict=True)):
                text = html.escape(word)
                if evidence and evidence[i][j]:
                    text = f"<u>{text}</u>"
                line.append(f'<span class="w" title="{w:.3f}" style="background: rgba({_WORD_RGB[0]}, '
                            f'{_WORD_RGB[1]}, {_WORD_RGB[2]}, {w / top:.3f})">{text}</span>')
            parts.append("<p>" + " ".join(line) + "</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_text_figure(blocks: list[dict[str, Any]], png: str | Path, html_path: str | Path | None = None, *,
                      title: str = "attention over words") -> None:
    """Draw ``blocks`` as coloured monospace text into ``png`` (and the HTML page into ``html_path``)."""
    if html_path is not None:
        atomic_write_text(Path(html_path), text_html(blocks, title=title))
    lines: list[tuple[str, Any]] = []  # ("title", text) or ("sentence", (block, i))
    for b, block in enumerate(blocks):
        lines.append(("title", block["title"]))
        lines.extend(("sentence", (b, i)) for i in range(len(block["sentences"])))
    width = max([len(block["title"]) for block in blocks]
                + [6 + sum(len(w) + 1 for w in s) for block in blocks for s in block["sentences"]], default=10)
    plt = pyplot()
    char_in, line_in = 0.075, 0.24  # inches per character (monospace 9 pt) and per line
    fig = plt.figure(figsize=(max(4.0, width * char_in + 0.3), len(lines) * line_in + 0.3))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(0, width)
    ax.set_ylim(len(lines), 0)
    ax.axis("off")
    for row, (kind, what) in enumerate(lines):
        y = row + 0.6
        if kind == "title":
            ax.text(0, y, what, fontsize=9, family="monospace", weight="bold", va="center")
            continue
        b, i = what
        block = blocks[b]
        top = _scale([w for sent in block["weights"] for w in sent])
        x = 0.0
        sw = block.get("sentence_weights")
        if sw:
            a = sw[i] / _scale(sw)
            ax.text(x, y, f"{sw[i]:.2f}", fontsize=8, family="monospace", va="center",
                    bbox={"facecolor": (*tuple(c / 255 for c in _SENT_RGB), a), "edgecolor": "none", "pad": 1})
        x += 6
        evidence = block.get("evidence")
        for j, (word, w) in enumerate(zip(block["sentences"][i], block["weights"][i], strict=True)):
            bold = bool(evidence and evidence[i][j])
            ax.text(x, y, word, fontsize=9, family="monospace", va="center", weight="bold" if bold else "normal",
                    bbox={"facecolor": (*tuple(c / 255 for c in _WORD_RGB), w / top), "edgecolor": "none",
                          "pad": 1})
            x += len(word) + 1
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)

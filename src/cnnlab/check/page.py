"""check.html: one self-contained page (thumbnails inline as base64 JPEG, no script, no network):
the counts, the class balance, then each kind of finding with its images, worst first."""

from __future__ import annotations

import base64
import io
from html import escape
from typing import TYPE_CHECKING

from PIL import Image

from ..data.images import ImageReadError, open_image, tensor_to_image

if TYPE_CHECKING:
    from .findings import CheckResult, Finding

THUMB = 112  # pixels, the longer side
SHOWN = 60  # findings of a kind shown with their images; check.csv has all of them
TITLES = {"label-issue": "Likely label errors", "leak": "Leaks: test images with a copy in train",
          "duplicate": "Duplicates within a split", "outlier": "Outliers: unlike every other image",
          "blank": "Near-blank images", "size": "Unusual sizes", "aspect": "Unusual aspect ratios",
          "mode": "Unusual colour modes", "unreadable": "Unreadable files"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2330; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d8dce5; }
table { border-collapse: collapse; margin: 0.6rem 0; } td, th { padding: 0.2rem 0.7rem;
text-align: left; border-bottom: 1px solid #eceef3; } .muted { color: #5b6475; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8rem; } figure { margin: 0; width: 240px;
font-size: 0.8rem; } figure.single { width: 128px; } figure img { border: 1px solid #d8dce5; }
.pair { display: flex; gap: 4px; } .bad { color: #b3261e; } .good { color: #1b6e3a; }
"""


def picture(result: CheckResult, index: int) -> Image.Image | None:
    """The image of a row of Items as it was checked (None when it cannot be read)."""
    items = result.items
    try:
        return tensor_to_image(items.tensors[index]) if items.tensors is not None \
            else open_image(items.paths[index])
    except ImageReadError:
        return None


def thumbnail(result: CheckResult, index: int) -> str:
    """A data: URI of the image, at most THUMB pixels a side ('' when it cannot be read)."""
    image = picture(result, index)
    if image is None:
        return ""
    image = image.convert("RGB")
    image.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    if max(image.size) < THUMB // 2:  # tiny images (28x28) shown larger, pixels kept sharp
        factor = THUMB // max(image.size)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(uri: str, name: str) -> str:
    if not uri:
        return '<span class="bad">unreadable</span>'
    return f'<img src="{uri}" alt="{escape(name)}" title="{escape(name)}">'


def _card(result: CheckResult, finding: Finding) -> str:
    if finding.other >= 0:  # a pair, side by side
        images = (f'<div class="pair">{_img(thumbnail(result, finding.index), finding.file)}'
                  f'{_img(thumbnail(result, finding.other), finding.other_file)}</div>')
        labels = (f"{escape(finding.split)}: {escape(finding.label)} / "
                  f"{escape(finding.other_split)}: {escape(finding.other_label)}")
        text = (f"{labels}<br>{escape(finding.file)}<br>{escape(finding.other_file)}<br>"
                f'<span class="muted">{escape(finding.note)}</span>')
        return f"<figure>{images}<figcaption>{text}</figcaption></figure>"
    label = f"given <b>{escape(finding.label)}</b>"
    if finding.suggested:
        label += f'<br>suggested <b class="good">{escape(finding.suggested)}</b>'
        label += f" (quality {finding.score:.2f})"
    return (f'<figure class="single">{_img(thumbnail(result, finding.index), finding.file)}'
            f"<figcaption>{label}<br>{escape(finding.file)}<br>"
            f'<span class="muted">{escape(finding.note)}</span></figcaption></figure>')


def _section(result: CheckResult, kind: str) -> str:
    found = [f for f in result.findings if f.kind == kind]
    if not found:
        return ""
    more = (f'<p class="muted">The first {SHOWN} of {len(found)}; check.csv lists them all.</p>'
            if len(found) > SHOWN else "")
    if kind == "label-issue":  # the figure write_check puts beside this page
        more += ('<p class="muted">The worst side by side, to print or share: '
                 '<a href="label_issues.png">label_issues.png</a>.</p>')
    cards = "".join(_card(result, f) for f in found[:SHOWN])
    return (f'<section id="{kind}"><h2>{TITLES[kind]} ({len(found)})</h2>{more}'
            f'<div class="grid">{cards}</div></section>')


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                               for k, v in rows) + "</table>"


def _balance(summary: dict) -> str:
    counts = summary["balance"]["counts"]
    splits = list(counts)
    classes = list(next(iter(counts.values()), {}))
    head = "".join(f"<th>{escape(s)}</th>" for s in splits)
    body = "".join(f"<tr><td>{escape(c)}</td>" + "".join(f"<td>{counts[s][c]}</td>" for s in splits)
                   + "</tr>" for c in classes)
    ratio = summary["balance"]["imbalance"]
    said = (f"largest training class over smallest: {ratio:.1f}x" if ratio else
            "a class has no training images")
    return (f"<h2>Classes</h2><p>{escape(said)}</p>"
            f"<table><tr><th>class</th>{head}</tr>{body}</table>")


def render(result: CheckResult) -> str:
    summary = result.summary
    counts = [(kind, str(n)) for kind, n in summary["counts"].items()]
    method = [("images", f"{summary['read']:,} read of {summary['images']:,}"),
              ("embedding", summary["embedding"]),
              ("label model", f"{summary['label_model']}, {summary['folds']} folds"),
              ("copies", f"{summary['copies_embedding']}, cosine >= {summary['similarity']}" +
               (f" or hash distance <= {summary['hash_bits']}" if summary["hash_bits"] >= 0 else "")),
              ("time", f"{summary['seconds']:.0f} s")]
    sections = "".join(_section(result, kind) for kind in TITLES)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>check: {escape(result.data)}</title><style>{STYLE}</style></head><body>"
            f"<h1>What is wrong with {escape(result.data)}</h1>"
            f'<p class="muted">cnnlab check. Each finding is one row of check.csv; '
            f"<code>cnnlab train --exclude check.csv</code> leaves out the rows marked exclude.</p>"
            f"{_table(counts)}{_table(method)}{_balance(summary)}{sections}</body></html>")

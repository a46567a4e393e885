"""A tiny HTML page builder for reports: sections, tables, figures and notes, styled inline.

The page references its PNGs by file name beside index.html and loads nothing else (no scripts, fonts or
stylesheets from the network), so a report folder can be copied anywhere and opened offline.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 16px 24px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 1.6em; }
h3 { margin-bottom: 0.3em; } .meta { color: #666; font-size: 0.9em; }
nav a { margin-right: 12px; font-size: 0.9em; } .note { background: #fff8e1; border-left: 4px solid #f0b400;
padding: 6px 10px; font-size: 0.9em; } table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; } tr.hl td { background: #e8f5e9; font-weight: 600; }
figure { display: inline-block; margin: 6px 10px 6px 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: 0.8em; color: #555; }
.kpi { display: inline-block; margin: 4px 18px 4px 0; } .kpi b { font-size: 1.4em; display: block; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits, missing values as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Page:
    """An HTML page assembled section by section; `write()` saves it as index.html in `folder`."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.parts: list[str] = []
        self.sections: list[tuple[str, str]] = []

    def section(self, anchor: str, title: str) -> None:
        """Start a section; `anchor` is its id (tests and the navigation bar use it)."""
        if self.sections:
            self.parts.append("</section>")
        self.sections.append((anchor, title))
        self.parts.append(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>')

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{esc(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{esc(text)}</p>')

    def kpis(self, items: dict[str, str]) -> None:
        self.parts.append("<div>" + "".join(f'<span class="kpi"><b>{esc(v)}</b>{esc(k)}</span>'
                                            for k, v in items.items()) + "</div>")

    def table(self, rows: pd.DataFrame | Sequence[dict], highlight: Sequence[bool] | None = None) -> None:
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
        body = []
        for i, (_, r) in enumerate(df.iterrows()):
            cls = ' class="hl"' if highlight is not None and highlight[i] else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r.tolist()) + "</tr>")
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def figure(self, path: str | Path, caption: str = "", width: int | None = None) -> None:
        """An image beside index.html, by file name."""
        style = f' style="width:{width}px"' if width else ""
        self.parts.append(f'<figure><img src="{esc(Path(path).name)}" alt="{esc(caption or Path(path).stem)}"{style}>'
                          f"<figcaption>{esc(caption)}</figcaption></figure>")

    def render(self) -> str:
        nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in self.sections)
        closing = "</section>" if self.sections else ""
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(self.title)}</title>'
                f"<style>{CSS}</style></head><body><h1>{esc(self.title)}</h1>"
                f'<p class="meta">{esc(self.subtitle)}</p><nav>{nav}</nav>{"".join(self.parts)}{closing}'
                f"</body></html>\n")

    def write(self, folder: str | Path) -> Path:
        out = Path(folder) / "index.html"
        out.write_text(self.render(), encoding="utf-8")
        return out

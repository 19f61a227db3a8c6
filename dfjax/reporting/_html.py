"""Small HTML helpers for the report's static pages (escaping, table cells, a page with
the leaderboard's inline CSS and JS, inline PNG figures)."""

from __future__ import annotations

import base64
import html
from typing import Any

from dfjax.reporting._leaderboard_assets import SORT_AND_FILTER_JS, STYLE_CSS


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def td(text: str, value: Any = None, *, cls: str = "", title: str = "",
        raw: bool = False) -> str:
    """A table cell; `value` (number or text) is what sorting uses, none = sorts last."""
    attrs = ""
    if value is not None:
        attrs += f' data-v="{esc(repr(value) if isinstance(value, float) else value)}"'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{esc(title)}"'
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE_CSS}</style>\n"
            f"<script>{SORT_AND_FILTER_JS}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def img(png: bytes | None, caption: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no error recorded"

"""The README and the lessons in docs/: every link resolves, every setting is documented.

Links are checked as GitHub renders them: a relative path must name a file of the repository, and
an anchor must name a heading of that file, spelled by GitHub's rule (lower case, spaces to
hyphens, punctuation dropped, letters of any alphabet kept, a repeated heading numbered -1, -2).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").rglob("*.md")])
SETTINGS_PAGE = ROOT / "docs" / "architecture.md"
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:


def prose(text: str) -> str:
    """The text without code blocks and inline code: what looks like a link there is code."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (before numbering repeats)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page's headings, a repeated one numbered as GitHub does."""
    seen: Counter[str] = Counter()
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = anchor(heading)
        result.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return result


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def test_the_anchor_rule_is_githubs() -> None:
    assert anchor("2. Синхронный запрос с долгим ответом — урок о блокировке") == (
        "2-синхронный-запрос-с-долгим-ответом--урок-о-блокировке")
    assert anchor("Сервисы по одному: `./ctl`") == "сервисы-по-одному-ctl"
    assert anchor("`acks_late` и `task_reject_on_worker_lost`: at-least-once") == (
        "acks_late-и-task_reject_on_worker_lost-at-least-once")
    assert anchor("Защищённый режим: `SECURE=1`, TLS") == "защищённый-режим-secure1-tls"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page
        if not file.is_relative_to(ROOT) or not file.exists():
            broken.append(f"{target}: no file {file}")
        elif fragment and file.suffix == ".md" and unquote(fragment) not in anchors(file):
            broken.append(f"{target}: no heading #{unquote(fragment)} in {file.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_every_lesson_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)
              if not EXTERNAL.match(target)}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages <= linked, f"not in the README's map: {sorted(p.name for p in pages - linked)}"


def test_the_readme_stays_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: lessons belong in docs/"


def test_every_setting_is_in_the_settings_table() -> None:
    table = SETTINGS_PAGE.read_text(encoding="utf-8").split("## Настройки", 1)[1]
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)`(?:, `([A-Z0-9_]+)`)?", table, re.MULTILINE))
    documented = {name for row in rows for name in row if name}
    missing = set(Settings.env_names()) - documented
    assert not missing, f"settings without a row in {SETTINGS_PAGE.name}: {sorted(missing)}"


def test_every_picture_of_docs_is_shown() -> None:
    shown = {(page.parent / target).resolve() for page in PAGES for target in links(page)
             if not EXTERNAL.match(target)}
    pictures = set((ROOT / "docs").glob("*.png"))
    assert pictures <= shown, f"pictures no page shows: {sorted(p.name for p in pictures - shown)}"

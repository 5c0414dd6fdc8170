"""Open every page of the built docs site from disk in headless Chromium and fail on what a reader would hit.

    .venv/bin/python tools/check_site.py [--site out/site] [--out out] [--chromium /usr/bin/chromium]

``make docs-check`` runs it (and ``make test``, so CI does). Every page is opened as ``file://`` (the
offline site: no server), at 1280 and at 820 pixels wide, and fails the run on:

- a console error or an uncaught page error, or a request that failed (a missing script, style or image);
- an image that did not load, or an internal link to a page or file that is not in the site;
- a table wider than its column that cannot be scrolled (cut off), or wider than the page;
- a search for ``FractalStream`` (typed into the search box, as a reader would) that finds nothing.

Screenshots of the index and of one wide page (Benchmarks) go to ``--out`` for a person to look at.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from playwright.sync_api import sync_playwright

WIDTHS = (1280, 820)
#: The wide page whose screenshot is kept (its tables are the widest).
WIDE_PAGE = "benchmarks.html"

_TABLES = """() => {
  const problems = [];
  const article = document.querySelector('article') || document.body;
  // The page's content column (Material's scroll wrappers reach into its padding, by design).
  const column = (document.querySelector('.md-content') || article).getBoundingClientRect().right;
  document.querySelectorAll('article table').forEach((table, i) => {
    // Scrollable: some element from the table up (the table, Material's wrapper) scrolls sideways
    // and stays inside the column.
    let scrollable = false;
    for (let el = table; el && el !== article; el = el.parentElement) {
      const sideways = ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
      if (sideways && el.getBoundingClientRect().right <= column + 1) { scrollable = true; break; }
    }
    const right = table.getBoundingClientRect().right;
    if (!scrollable && right > column + 1)
      problems.push(`table ${i + 1} is cut: ${Math.round(right)} px wide in a ${Math.round(column)} px column, no scroll bar`);
  });
  return problems;
}"""

_IMAGES = """() => Array.from(document.images).filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)"""

_LINKS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"""


def _internal_target(page_file: Path, href: str) -> Path | None:
    """The file an internal link points to (None for external links, mail and same-page anchors)."""
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https", "mailto", "data", "javascript") or href.startswith("#") or not parsed.path:
        return None
    target = (page_file.parent / unquote(parsed.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target


def check(site: Path, out: Path, chromium: str) -> list[str]:
    """Every problem found, as ``page: problem`` lines (an empty list: the site is fine)."""
    problems: list[str] = []
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    if not pages:
        return [f"{site}: no HTML pages; build the site first (make docs)"]
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            for width in WIDTHS:
                context = browser.new_context(viewport={"width": width, "height": 900})
                for page_file in pages:
                    name = page_file.relative_to(site).as_posix()
                    page = context.new_page()
                    seen: list[str] = []
                    page.on(
                        "console", lambda m, seen=seen: seen.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                    )
                    page.on("pageerror", lambda e, seen=seen: seen.append(f"page error: {e}"))
                    page.on("requestfailed", lambda r, seen=seen: seen.append(f"request failed: {r.url} ({r.failure})"))
                    page.goto(page_file.as_uri(), wait_until="load")
                    page.wait_for_timeout(100)
                    found = list(seen)
                    found += [f"image did not load: {src}" for src in page.evaluate(_IMAGES)]
                    found += page.evaluate(_TABLES)
                    if width == WIDTHS[0]:
                        for href in page.evaluate(_LINKS):
                            target = _internal_target(page_file, href)
                            if target is not None and not target.exists():
                                found.append(f"broken link: {href}")
                        if name == "index.html":
                            page.screenshot(path=str(out / "docs-index.png"))
                            found += _search(page)
                        if name == WIDE_PAGE:
                            page.screenshot(path=str(out / "docs-benchmarks.png"), full_page=False)
                    problems += [f"{name} ({width} px): {p}" for p in found]
                    page.close()
                context.close()
        finally:
            browser.close()
    return problems


def _search(page) -> list[str]:
    """Type ``FractalStream`` into the search box as a reader would; a problem when nothing is found."""
    query = page.locator("input[data-md-component='search-query']")
    if query.count() == 0:
        return ["no search box on the page"]
    try:
        if not query.is_visible():  # narrow screens: the search box opens from its button
            page.locator("label[for='__search']").filter(visible=True).first.click(timeout=5_000)
        query.fill("FractalStream", timeout=5_000)
        page.wait_for_selector(".md-search-result__item", timeout=15_000)
    except Exception as exc:  # noqa: BLE001 - playwright's timeouts: the search found nothing (or never ran)
        first = str(exc).splitlines()[0]
        return [f"a search for FractalStream found nothing ({first}); is its index or worker loaded from disk?"]
    return []


def main() -> int:
    """Check the site; exit status 1 when anything is wrong."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", default="out/site", help="the built site (default out/site)")
    parser.add_argument("--out", default="out", help="where the screenshots go (default out)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium to drive (default Debian's)")
    args = parser.parse_args()
    problems = check(Path(args.site).resolve(), Path(args.out), args.chromium)
    for line in problems:
        print(line, file=sys.stderr)
    pages = len([p for p in Path(args.site).rglob("*.html") if p.name != "404.html"])
    if problems:
        print(f"docs-check: {len(problems)} problem(s) in {pages} pages", file=sys.stderr)
        return 1
    print(f"docs-check: {pages} pages at {' and '.join(f'{w} px' for w in WIDTHS)}: no console error, broken link or "
          f"image, cut table; search finds FractalStream; screenshots in {args.out}/")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MkDocs hooks of the docs site (``hooks:`` in mkdocs.yml).

The docstrings cross-reference in reStructuredText roles (``:class:`~fractalshards.stream.FractalStream```),
which read well in ``help()`` and in the source; mkdocstrings renders docstrings as Markdown, where such
a role would show as ``:class:`` before the code. The hook turns each into the code alone, shortened
as ``~`` asks (the last dotted part), and drops the ``\\ `` that joins a plural ``s``.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([\w.]+(?:\(\))?)</code>(?:\\ )?")


def _code(match: re.Match) -> str:
    short, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    """Each reStructuredText role in a page's HTML, as the code it names."""
    return _ROLE.sub(_code, html)

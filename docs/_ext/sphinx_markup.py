"""A griffe extension for the API reference: the package's reST markup, read as markdown.

The docstrings use Sphinx roles (``:class:`Source```, ``:func:`~sskt_tf.data.load```)
and reST simple tables (rows between ``=====  =====`` borders). mkdocstrings reads
docstrings as markdown, where a role would print as ``:class:`` text and a table as
lines of ``=``. This extension, listed under the python handler's ``extensions`` in
``mkdocs.yml``, rewrites both before rendering:

- a role becomes an optional cross-reference: a link to the object where the reference
  documents it, its name in code font otherwise (``~`` shows the last component only);
- a simple table becomes a markdown table;
- in an ``Args:`` (or ``Attributes:``) section, a line at an item's indentation that does
  not start ``name:`` continues the item before it (griffe would warn and drop it).

The source files are not changed.
"""

import re

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)`")
_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_NAMED_SECTION = re.compile(r"^(\s*)(?:Args|Arguments|Parameters|Attributes|Keyword Args|Other Parameters):\s*$")
_ITEM = re.compile(r"^\s*\**[\w.]+(?: \([^)]*\))?:(?:\s|$)")


def _columns(border):
    """The start index of each ``=`` run of a table border."""
    return [match.start() for match in re.finditer(r"=+", border)]


def _cells(line, starts):
    bounds = [*starts[1:], None]
    return [line[start:end].strip() for start, end in zip(starts, bounds)]


def simple_tables_to_markdown(text):
    """Replaces reST simple tables (border, header, border, rows, border) by markdown tables."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        borders = [j for j in range(i, len(lines)) if _BORDER.match(lines[j])][:3]
        if len(borders) < 3 or borders[0] != i or borders[1] != i + 2:
            out.append(lines[i])
            i += 1
            continue
        top, header_end, bottom = borders
        starts = _columns(lines[top])
        header = _cells(lines[top + 1], starts)
        rows = [_cells(line, starts) for line in lines[header_end + 1 : bottom] if line.strip()]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + " --- |" * len(header))
        out.extend("| " + " | ".join(row) + " |" for row in rows)
        i = bottom + 1
    return "\n".join(out)


def indent_continuations(text):
    """Indents the continuation lines of ``name: description`` items written at the items' indentation."""
    lines = text.split("\n")
    item_indent = None
    for i, line in enumerate(lines):
        section = _NAMED_SECTION.match(line)
        if section:
            item_indent = None if i + 1 == len(lines) else len(lines[i + 1]) - len(lines[i + 1].lstrip())
            continue
        if item_indent is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent < item_indent:
            item_indent = None  # the section ended
        elif indent == item_indent and not _ITEM.match(line):
            lines[i] = " " * 4 + line
    return "\n".join(lines)


def _identifier(obj, name):
    """The full path of ``name`` as seen from ``obj``'s scope (``name`` itself when unknown)."""
    if name.startswith("sskt_tf."):
        return name
    first, _, rest = name.partition(".")
    try:
        path = obj.resolve(first)
    except griffe.NameResolutionError:  # an unknown name is shown as it is written
        return name
    return f"{path}.{rest}" if rest else path


def roles_to_references(obj, text):
    """Replaces Sphinx roles in ``text`` by optional cross-references resolved in ``obj``'s scope."""

    def reference(match):
        short, name = match.groups()
        title = name.rsplit(".", 1)[-1] if short else name
        return f'<autoref identifier="{_identifier(obj, name)}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(reference, text)


class SphinxMarkup(griffe.Extension):
    """Rewrites every docstring of the loaded package (see the module's docstring)."""

    def on_package(self, *, pkg, **kwargs):
        self._rewrite(pkg, set())

    def _rewrite(self, obj, seen):
        if obj.is_alias or obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = roles_to_references(
                obj, indent_continuations(simple_tables_to_markdown(obj.docstring.value))
            )
        for member in obj.members.values():
            self._rewrite(member, seen)

"""MyST Markdown of the chapters -> plain Markdown that Jupyter and Colab render (used by ``editions.py``).

Numbers follow the built site: sections ``4.2.``, equations ``(4.3)`` (a ``\\tag`` in the display math),
``Exercise 4.1``, ``Proposition 4.1`` and ``Algorithm 5.1`` (one counter per kind and chapter), citations
author-year from ``references.bib`` (``Wang et al. (2023)``, ``(Wang et al., 2023)``).

    exercise / solution      ->  #### Exercise 4.1 (Title)  /  #### Solution to Exercise 4.1 (Title)
    prf:*, admonitions       ->  a block between two rules, headed **Proposition 4.1 (Title)**, **Proof.**, **Note**
    {eq}, {ref}, {numref}    ->  (4.3), Exercise 4.4, the section title
    {cite:p}, {cite:t}       ->  (Wang et al., 2023), Wang et al. (2023); a References cell lists the works cited
    term / : definition      ->  - **term**: definition          (label)= targets are dropped
    [text](notation.md)      ->  [text](https://github.com/<repository>/blob/<branch>/book/notation.md)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
ROLE = re.compile(r"\{(?P<name>[\w:.-]+)\}`(?P<text>[^`]*)`")
EQ_LABEL = re.compile(r"\$\$[ \t]*\((?P<label>[^()\s]+)\)[ \t]*$", re.MULTILINE)
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=\s*$")
LINK = re.compile(r"\]\((?P<target>[^()\s#]+)(?P<anchor>#[^()\s]*)?\)")
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
CODE_DIRECTIVES = {"code", "code-block", "sourcecode", "code-cell"}


@dataclass
class Block:
    """A piece of a markdown cell: ``prose`` lines, a verbatim ``code`` fence, or a ``directive``."""

    kind: str
    lines: list[str]
    name: str = ""
    arg: str = ""
    options: dict[str, str] = field(default_factory=dict)
    closed: bool = True  # False: the fence runs to the end of the cell


def parse(lines: list[str]) -> list[Block]:
    """Split lines into blocks at fences; a directive's body is parsed again by the caller (nesting)."""
    blocks: list[Block] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            blocks.append(Block("prose", prose))
            prose = []
        char, n = m["fence"][0], len(m["fence"])
        j = i + 1
        while j < len(lines) and not re.fullmatch(rf"[ \t]*{re.escape(char)}{{{n},}}[ \t]*", lines[j]):
            j += 1
        directive, closed = DIRECTIVE.match(m["info"].strip()), j < len(lines)
        if directive is None:
            blocks.append(Block("code", lines[i : j + 1], closed=closed))
        else:
            body, options = lines[i + 1 : j], {}
            while body and (opt := OPTION.match(body[0])):
                options[opt["key"]] = opt["value"].strip()
                body = body[1:]
            blocks.append(Block("directive", body, directive["name"], directive["arg"].strip(), options, closed))
        i = j + 1
    if prose:
        blocks.append(Block("prose", prose))
    return blocks


@dataclass
class Refs:
    """What cross-references resolve to, for all chapters (filled by a first, collecting pass)."""

    eqs: dict[str, str] = field(default_factory=dict)  # equation label -> "4.3"
    names: dict[str, str] = field(default_factory=dict)  # label -> "Exercise 4.4", a section's title, ...
    titles: dict[str, str] = field(default_factory=dict)  # label -> "Exercise 4.4 (Its title)"
    docs: dict[str, str] = field(default_factory=dict)  # "book/04_proposition1" -> the chapter's title
    links: dict[str, str] = field(default_factory=dict)  # "notation.md" -> where an edition's notebook finds it
    bib: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> label, year, sort, entry


class Converter:
    """Converts the markdown cells of one chapter in order, numbering as it goes, as Sphinx does.

    With ``collect=True`` it only fills ``refs`` (unknown references resolve to ``?``); run it once over
    every chapter before converting any, so that references to later or other chapters resolve.
    """

    def __init__(self, refs: Refs, chapter: int | None, student: bool, collect: bool = False) -> None:
        self.refs, self.chapter, self.student, self.collect = refs, chapter, student, collect
        self.prefix = f"{chapter}." if chapter is not None else ""
        self.counts: Counter[str] = Counter()
        self.sections: list[int] = []
        self.target: str | None = None
        self.cited: set[str] = set()
        self.problems: list[str] = []  # fences that run to the end of a cell: the site shows them garbled

    def cell(self, text: str) -> str:
        """One markdown cell, converted (the student edition: without its solutions)."""
        return "\n".join(self.blocks(parse(text.splitlines()), top=True)).strip("\n")

    def blocks(self, blocks: list[Block], top: bool) -> list[str]:
        out: list[str] = []
        for b in blocks:
            if b.kind == "prose":
                lines = self.prose(b.lines, top)
            elif b.kind == "code":
                lines = b.lines
                if not b.closed and top:
                    self.problems.append(f"a code fence is never closed: {b.lines[0].strip()!r}")
            else:
                lines = self.directive(b)
            while lines and not lines[0].strip() and (not out or not out[-1].strip()):
                lines = lines[1:]  # one blank line between blocks, not the two of a block's end and start
            if lines[:1] == ["---"] and [x for x in out if x.strip()][-1:] == ["---"]:
                lines = lines[2:]  # one rule between two blocks
            out += lines
        return out

    def lookup(self, table: dict[str, str], label: str) -> str:
        if self.collect:
            return table.get(label, "?")
        if label not in table:
            raise KeyError(f"unknown reference target {label!r}")
        return table[label]

    def equation(self, label: str) -> str:
        self.counts["eq"] += 1
        self.refs.eqs[label] = f"{self.prefix}{self.counts['eq']}"
        return f"\\tag{{{self.refs.eqs[label]}}}"

    def heading(self, b: Block) -> str:
        """``Exercise 4.1 (Title)``, ``Proposition 4.1``: the numbered kinds have one counter each."""
        word = "Exercise" if b.name == "exercise" else b.name[4:].title()
        if "nonumber" not in b.options:
            self.counts[b.name] += 1
            word += f" {self.prefix}{self.counts[b.name]}"
        head = f"{word} ({b.arg})" if b.arg else word
        if label := b.options.get("label"):
            self.refs.names[label], self.refs.titles[label] = word, head
        return head

    def directive(self, b: Block) -> list[str]:
        if b.name in CODE_DIRECTIVES:
            return [f"```{b.arg}", *b.lines, "```"]
        if b.name == "math":
            tag = self.equation(b.options["label"]) if "label" in b.options else ""
            return ["$$", *b.lines, *([tag] if tag else []), "$$"]
        if b.name == "exercise" or (b.name.startswith("prf:") and b.name != "prf:proof"):
            head = self.heading(b)
        elif b.name == "solution":
            head = "Solution to " + self.lookup(self.refs.titles, b.arg)
        elif b.name == "prf:proof":
            head = "Proof."
        else:  # admonition, note, tip, warning, dropdown, ...: the title, else the directive's name
            head = b.arg or b.name.split(":")[-1].replace("-", " ").title()
        inner = parse(b.lines)
        if not b.closed or any(c.kind == "code" and not c.closed for c in inner):
            self.problems.append(
                f"{{{b.name}}} {b.arg}: a fence inside closes it or it is never closed "
                "(give the directive more backticks than the code blocks inside)"
            )
        body = self.blocks(inner, top=False)  # converted even when dropped: it may number things
        if b.name == "solution" and self.student:
            return []
        while body and not body[-1].strip():
            body = body[:-1]
        if b.name in ("exercise", "solution"):
            return ["", f"#### {self.inline(head)}", "", *body, ""]
        return ["", "---", "", f"**{self.inline(head)}**", "", *body, "", "---", ""]

    def prose(self, lines: list[str], top: bool) -> list[str]:
        out: list[str] = []
        for i, line in enumerate(lines):
            if (t := TARGET.match(line)) is not None:
                self.target = t["label"]
                continue
            h = HEADING.match(line)
            if h is not None and self.target is not None:
                self.refs.names[self.target], self.target = self.inline(h["title"]), None
            if h is not None and top and self.chapter is not None:
                level = len(h["hashes"])
                self.sections = (self.sections + [0] * level)[:level]
                self.sections[-1] += 1
                number = ".".join(str(n) for n in [self.chapter, *self.sections[1:]])
                line = f"{h['hashes']} {number}. {h['title']}"
            if line.startswith(": ") and i > 0 and lines[i - 1].strip() and out:  # definition list
                if lines[i - 1].startswith((": ", " ", "\t")):  # a second definition of the same term
                    line = f"  {line[2:]}"
                else:
                    line = f"- **{out.pop().strip()}**: {line[2:]}"
            out.append(line)
        text = EQ_LABEL.sub(lambda m: self.equation(m["label"]) + "\n$$", "\n".join(out))
        return self.inline(text).split("\n")

    def inline(self, text: str) -> str:
        """Roles become text; links to the book's pages point where a notebook of an edition finds them."""
        text = LINK.sub(lambda m: f"]({self.refs.links.get(m['target'], m['target'])}{m['anchor'] or ''})", text)
        return ROLE.sub(self.role, text)

    def role(self, m: re.Match[str]) -> str:
        name, text = m["name"], m["text"]
        explicit = re.fullmatch(r"(?s)(?P<title>.*\S)\s*<(?P<target>[^<>]+)>", text)
        target = explicit["target"] if explicit else text
        if name.startswith("cite"):
            return self.cite(name, [k.strip() for k in text.split(",")])
        if name == "eq":
            return f"({self.lookup(self.refs.eqs, target)})"
        if name == "doc":
            return explicit["title"] if explicit else self.lookup(self.refs.docs, target.lstrip("/"))
        if name in ("ref", "numref", "prf:ref"):
            found = self.lookup(self.refs.names, target)
            if explicit and name == "numref":
                number = found.rpartition(" ")[2]
                return explicit["title"].replace("%s", number).replace("{number}", number)
            return explicit["title"] if explicit else found
        if name == "math":
            return f"${text}$"
        if name in ("code", "kbd", "file", "samp", "command"):
            return f"`{text}`"
        return explicit["title"] if explicit else text  # abbr, term, sub-ref, ...: the text itself

    def cite(self, name: str, keys: list[str]) -> str:
        if self.collect:
            return "(?)"
        self.cited.update(keys)
        entries = sorted((self.refs.bib[k] for k in keys), key=lambda e: (e["sort"], e["year"]))
        if name.endswith(":year"):
            return ", ".join(e["year"] for e in entries)
        if name.endswith(":author"):
            return ", ".join(e["label"] for e in entries)
        if name.startswith("cite:t"):
            return ", ".join(f"{e['label']} ({e['year']})" for e in entries)
        return "(" + "; ".join(f"{e['label']}, {e['year']}" for e in entries) + ")"

    def references(self) -> str:
        """A markdown cell listing the works cited, or "" if none was."""
        entries = sorted((self.refs.bib[k] for k in self.cited), key=lambda e: (e["sort"], e["year"]))
        return "\n".join(["## References", ""] + [f"- {e['entry']}" for e in entries]) if entries else ""


def read_bib(path: Path) -> dict[str, dict[str, str]]:
    """Author-year labels as sphinxcontrib-bibtex makes them (``Penrose``, ``Walker and Ni``, ``Cao et al.``)."""
    from pybtex.database import parse_file
    from pybtex.richtext import Text

    def plain(latex: str) -> str:
        return str(Text.from_latex(latex).render_as("text")).strip()

    out = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [plain(" ".join(p.prelast_names + p.last_names)) for p in people]
        label = last[0] if len(last) == 1 else " and ".join(last) if len(last) == 2 else f"{last[0]} et al."
        full = ", ".join(
            plain(" ".join(p.first_names + p.middle_names + p.prelast_names + p.last_names)) for p in people
        )
        f = entry.fields
        venue = f.get("booktitle") or f.get("journal") or f.get("publisher") or f.get("howpublished") or ""
        year = str(f.get("year", "n.d."))
        parts = [f"{label} ({year}).", f"{full}.", f"*{plain(f.get('title', key))}*."]
        parts += [f"{plain(venue)}."] if venue else []
        parts += [f"<{f['url']}>"] if "url" in f else []
        out[key] = {"label": label, "year": year, "sort": " ".join(last), "entry": " ".join(parts)}
    return out

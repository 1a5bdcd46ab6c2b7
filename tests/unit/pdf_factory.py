"""Build small, valid PDFs with real text for tests, without a PDF-writing dependency.

Each page shows its string in Helvetica (WinAnsi encoding), one text line per line of the string, so
pypdf's text extraction gives the lines back. Only Latin-1 text is supported.
"""

from __future__ import annotations

from collections.abc import Sequence


def _literal(line: str) -> bytes:
    """A PDF literal string: parentheses and backslashes escaped."""
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    try:
        return b"(" + escaped.encode("latin-1") + b")"
    except UnicodeEncodeError:
        raise ValueError(f"pdf_factory only writes Latin-1 text, not {line!r}") from None


def _content_stream(text: str) -> bytes:
    ops = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 720 Td"]
    for i, line in enumerate(text.split("\n")):
        if i:
            ops.append(b"T*")
        if line:
            ops.append(_literal(line) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops)


def build_text_pdf(pages: Sequence[str], *, title: str | None = None) -> bytes:
    """A PDF with one page per string of `pages` (an empty string makes a page without text)."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    first_page = 4  # objects: 1 catalog, 2 page tree, 3 font, then a page and its content per page
    info = first_page + 2 * len(pages) if title is not None else None
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
        + b"] /Count %d >>" % len(pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        content = _content_stream(text)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (first_page + 2 * i + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    if title is not None:
        objects.append(b"<< /Title " + _literal(title) + b" >>")

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R" % (len(objects) + 1)
    if info is not None:
        out += b" /Info %d 0 R" % info
    out += b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)

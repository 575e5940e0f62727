"""Reports: ``report.html`` (self-contained: SVG charts and CSS inline, nothing fetched) and
``report.pdf`` (the same sections, numbers and order, made with matplotlib and pypdf) from run
folders and capacity results (``capacity.json`` from ``harness capacity``: a Capacity section).

Works for one run, a suite, and runs of one scenario on several machines (side by side, named by
their hardware). A folder that holds no run, or a file of an unknown format version, is refused
with a ``HarnessError`` (one line, exit 2); an incomplete run is reported with a visible note.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(paths: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/report.html`` and ``out_dir/report.pdf`` for the runs under ``paths``
    (run folders or folders of run folders) and the capacity results among them (a
    ``capacity.json``, or a folder holding one); returns both paths."""
    from harness.errors import HarnessError
    from harness.report.runs import load_inputs

    # refuses bad input before the heavy imports
    runs, capacity = load_inputs([Path(p) for p in paths])

    import matplotlib

    from harness.report.charts import STYLE
    from harness.report.document import build_document
    from harness.report.html import write_html
    from harness.report.pdf import write_pdf

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None
    with matplotlib.rc_context(STYLE):
        document = build_document(runs, capacity)
        try:
            html = write_html(document, runs, out_dir / "report.html")
            pdf = write_pdf(document, out_dir / "report.pdf")  # after the HTML: it resizes figures
        except OSError as exc:
            raise HarnessError(f"cannot write the report in {out_dir}: {exc.strerror}") from None
    return html, pdf

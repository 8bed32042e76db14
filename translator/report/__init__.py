"""Gap reports of a translation: the model (``model``), the migration plan (``plan``), Lua stubs
(``lua``), the corpus summary (``corpus``) and one renderer module per output format."""

from translator.report.model import Entry, Report, Unit, build_report

__all__ = ["Entry", "Report", "Unit", "build_report"]

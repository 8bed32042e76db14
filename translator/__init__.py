"""Translate nginx configs into newproxy configs and report every directive that is not translated exactly.

``translate`` gives the newproxy config and one classified occurrence per directive (levels from
``registry``); ``translator.report`` turns that into the gap report (terminal, Markdown, JSON, HTML,
SARIF), the migration plan and Lua plugin stubs.
"""

from translator.translate import Occurrence, Translation, translate

__all__ = ["Occurrence", "Translation", "translate"]

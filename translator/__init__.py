"""Translate nginx configs into newproxy configs and report every directive that is not translated exactly."""

from translator.translate import Occurrence, Translation, translate

__all__ = ["Occurrence", "Translation", "translate"]

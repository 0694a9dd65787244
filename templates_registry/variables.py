"""The variables of a template: its ``{{...}}`` placeholders, named (``{{nombre}}``) or positional (``{{1}}``)."""

import re

from templates_registry.models import Template

# Meta's placeholders: {{1}} or {{lowercase_name}}; spaces inside the braces are tolerated on input.
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def extract_variables(text: str) -> list[str]:
    """The placeholder names of ``text``, without repeats.

    Named placeholders keep their order of first appearance; when every placeholder is a number they
    are sorted by it, because positional parameters are sent in that order ({{1}}, {{2}}, ...).
    """
    names = list(dict.fromkeys(PLACEHOLDER_RE.findall(text or "")))
    if names and all(name.isdigit() for name in names):
        names.sort(key=int)
    return names


def parameter_format_infer(*variable_lists: list[str]) -> str:
    """POSITIONAL when every variable is a number, NAMED otherwise (and for a template without any)."""
    names = [name for names in variable_lists for name in names]
    if names and all(name.isdigit() for name in names):
        return Template.ParameterFormat.POSITIONAL
    return Template.ParameterFormat.NAMED


def variables_mixed(*variable_lists: list[str]) -> bool:
    """True when named and positional placeholders are mixed, which Meta refuses."""
    names = [name for names in variable_lists for name in names]
    digits = sum(name.isdigit() for name in names)
    return 0 < digits < len(names)

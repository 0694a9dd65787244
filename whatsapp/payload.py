"""The body of one template message (CONTRACT section 6), built on the hot path of delivery.

Pure Python, no Django import. `TemplateMessageBuilder` does the per-template work once (variable order,
parameter keys), so building each recipient's body is a few dict literals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class TemplateLike(Protocol):
    name: str
    language: str
    parameter_format: str
    header_variables: Sequence[str]
    body_variables: Sequence[str]


class MissingVariablesError(ValueError):
    """A recipient lacks variables the template needs (the send fails as `missing_variables`, never POSTed)."""

    def __init__(self, missing: list[str]):
        super().__init__(f"Missing template variables: {', '.join(missing)}.")
        self.missing = missing


def _positional_key(name: str) -> tuple[int, str]:
    text = str(name)
    return (int(text), text) if text.isdecimal() else (1 << 30, text)


def _ordered(names: Sequence[str], *, positional: bool) -> tuple[str, ...]:
    unique = list(dict.fromkeys(str(name) for name in names))
    # Positional parameters are matched by position, so they go out sorted by their number ({{1}}, {{2}}, ...).
    return tuple(sorted(unique, key=_positional_key)) if positional else tuple(unique)


def _value(variables: Mapping[str, Any], name: str) -> str:
    value = variables[name]
    if value is None:
        raise KeyError(name)
    return value if isinstance(value, str) else str(value)


class TemplateMessageBuilder:
    """Builds Graph API template messages for one template; make one per template and reuse it for every send."""

    __slots__ = ("name", "language", "positional", "header_variables", "body_variables", "variables")

    def __init__(self, template: TemplateLike):
        self.name = template.name
        self.language = template.language
        self.positional = str(template.parameter_format).upper() == "POSITIONAL"
        self.header_variables = _ordered(template.header_variables or (), positional=self.positional)
        self.body_variables = _ordered(template.body_variables or (), positional=self.positional)
        self.variables = tuple(dict.fromkeys(self.header_variables + self.body_variables))

    def missing(self, variables: Mapping[str, Any] | None) -> list[str]:
        """The template's variables this recipient does not supply (a value of None counts as missing)."""
        variables = variables or {}
        return [name for name in self.variables if variables.get(name) is None]

    def _parameters(self, names: tuple[str, ...], variables: Mapping[str, Any]) -> list[dict[str, str]]:
        if self.positional:
            return [{"type": "text", "text": _value(variables, name)} for name in names]
        return [{"type": "text", "parameter_name": name, "text": _value(variables, name)} for name in names]

    def build(self, to: str, variables: Mapping[str, Any] | None = None, callback: str | None = None) -> dict[str, Any]:
        """The JSON body of `POST /{phone_number_id}/messages`; raises MissingVariablesError when one is lacking.

        `callback` goes out as `biz_opaque_callback_data` (see callback_reference), which Meta echoes in every
        status webhook of the message."""
        variables = variables or {}
        try:
            components: list[dict[str, Any]] = []
            if self.header_variables:
                components.append({"type": "header", "parameters": self._parameters(self.header_variables, variables)})
            if self.body_variables:
                components.append({"type": "body", "parameters": self._parameters(self.body_variables, variables)})
        except KeyError:
            raise MissingVariablesError(self.missing(variables)) from None
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        # Meta rejects components without parameters, so a template without variables sends none at all.
        if components:
            template["components"] = components
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
        }
        if callback is not None:
            body["biz_opaque_callback_data"] = callback
        return body


# --- the send's reference in biz_opaque_callback_data (CONTRACT 6, 8) ------------------------------------------
# "<broadcast id>:<index>": unique (one send per index of a broadcast), the same on every attempt of the send (so a
# status of any of its POSTs finds it), looked up through the unique (broadcast, index) index in one batch, and not
# a guessable global counter (a stray value from another app on the number cannot name one of our sends by chance).
CALLBACK_SEPARATOR = ":"


def callback_reference(broadcast_id: str, index: int) -> str:
    """The `biz_opaque_callback_data` of a broadcast's send."""
    return f"{broadcast_id}:{index}"


def callback_parse(reference: str) -> tuple[str, int] | None:
    """(broadcast id, index) from a `biz_opaque_callback_data` of ours, or None for anything else."""
    broadcast_id, sep, index = reference.rpartition(CALLBACK_SEPARATOR)
    if not sep or not broadcast_id or len(broadcast_id) > 24 or not index.isdecimal() or len(index) > 9:
        return None
    return broadcast_id, int(index)


def build_template_message(*, to: str, template: TemplateLike, variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """One-off form of `TemplateMessageBuilder(template).build(...)`; loops should keep a builder per template."""
    return TemplateMessageBuilder(template).build(to, variables)


def missing_variables(*, template: TemplateLike, variables: Mapping[str, Any] | None) -> list[str]:
    """The template's variables (header first, then body) that `variables` lacks."""
    return TemplateMessageBuilder(template).missing(variables)

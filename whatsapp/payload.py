"""The body of one template message (docs/rules.md), built on the hot path of delivery.

Pure Python, no Django import. `TemplateMessageBuilder` does the per-template work once (variable order,
parameter keys), so building each recipient's body is a few dict literals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from whatsapp.numbers import is_bsuid
from whatsapp.template_components import COPY_CODE, MEDIA_FORMATS, ButtonSpec, otp_index


class TemplateLike(Protocol):
    """What the builder reads of a template; ``header_format``, ``buttons`` and ``category`` are optional (a
    template without them has a text header at most and no button parameters)."""

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


def media_parameter(media: Mapping[str, Any]) -> dict[str, Any]:
    """A header's media parameter: ``{"type": "image", "image": {"link": ...}}`` (``id`` instead of ``link``; a
    document's ``filename`` with it)."""
    kind = media["type"]
    obj = {"id": media["id"]} if media.get("id") else {"link": media["link"]}
    if kind == "document" and media.get("filename"):
        obj["filename"] = media["filename"]
    return {"type": kind, kind: obj}


def button_component(spec: ButtonSpec, value: str) -> dict[str, Any]:
    """A button's component: the URL suffix or one-time code as a ``url`` button, a coupon as ``copy_code``."""
    if spec.kind == COPY_CODE:
        return {
            "type": "button",
            "sub_type": "copy_code",
            "index": str(spec.index),
            "parameters": [{"type": "coupon_code", "coupon_code": value}],
        }
    return {
        "type": "button",
        "sub_type": "url",
        "index": str(spec.index),
        "parameters": [{"type": "text", "text": value}],
    }


def _value(variables: Mapping[str, Any], name: str) -> str:
    value = variables[name]
    if value is None:
        raise KeyError(name)
    return value if isinstance(value, str) else str(value)


class TemplateMessageBuilder:
    """Builds Graph API template messages for one template; make one per template and reuse it for every send."""

    __slots__ = (
        "name",
        "language",
        "positional",
        "header_variables",
        "body_variables",
        "variables",
        "media_header",
        "header_media",
        "buttons",
        "otp_key",
        "plain",
    )

    def __init__(self, template: TemplateLike, *, header_media: Mapping[str, Any] | None = None):
        """``header_media``: the broadcast's media for a media header (a send's own overrides it)."""
        self.name = template.name
        self.language = template.language
        self.positional = str(template.parameter_format).upper() == "POSITIONAL"
        self.header_variables = _ordered(template.header_variables or (), positional=self.positional)
        self.body_variables = _ordered(template.body_variables or (), positional=self.positional)
        # The header's media type ("image", ...) when the template's header is media, else "".
        fmt = str(getattr(template, "header_format", "") or "").upper()
        self.media_header = fmt.lower() if fmt in MEDIA_FORMATS else ""
        if self.media_header:
            self.header_variables = ()
        self.header_media = media_parameter(header_media) if self.media_header and header_media else None
        # The buttons that take a parameter, in index order.
        self.buttons: tuple[ButtonSpec, ...] = tuple(b for b in getattr(template, "buttons", ()) or () if b.dynamic)
        otp = otp_index(self.buttons)
        # An authentication template's one-time code is its OTP button's value and also the body's {{1}}.
        self.otp_key = None if otp is None else str(otp)
        if self.otp_key is not None:
            self.body_variables = ()
        self.variables = tuple(dict.fromkeys(self.header_variables + self.body_variables))
        # Nothing but text variables: the hot path of most templates.
        self.plain = not self.media_header and not self.buttons

    def missing(self, variables: Mapping[str, Any] | None) -> list[str]:
        """The template's variables this recipient does not supply (a value of None counts as missing)."""
        variables = variables or {}
        return [name for name in self.variables if variables.get(name) is None]

    def _parameters(self, names: tuple[str, ...], variables: Mapping[str, Any]) -> list[dict[str, str]]:
        if self.positional:
            return [{"type": "text", "text": _value(variables, name)} for name in names]
        return [{"type": "text", "parameter_name": name, "text": _value(variables, name)} for name in names]

    def _component_parameters(
        self, components: list[dict[str, Any]], header_media: Mapping[str, Any] | None, buttons: Mapping[str, Any]
    ) -> None:
        """Adds the media header (first), the one-time code's body and the buttons (last); raises
        MissingVariablesError naming what a media header or a button lacks."""
        missing = []
        if self.media_header:
            media = media_parameter(header_media) if header_media else self.header_media
            if media is None:
                missing.append("header_media")
            else:
                components.insert(0, {"type": "header", "parameters": [media]})
        if self.otp_key is not None:
            code = buttons.get(self.otp_key)
            if code:
                components.append({"type": "body", "parameters": [{"type": "text", "text": code}]})
        for spec in self.buttons:
            value = buttons.get(str(spec.index))
            if value:
                components.append(button_component(spec, value))
            else:
                missing.append(f"buttons.{spec.index}")
        if missing:
            raise MissingVariablesError(missing)

    def build(
        self,
        to: str,
        variables: Mapping[str, Any] | None = None,
        header_media: Mapping[str, Any] | None = None,
        buttons: Mapping[str, Any] | None = None,
        callback: str | None = None,
    ) -> dict[str, Any]:
        """The JSON body of `POST /{phone_number_id}/messages` to ``to`` (an E.164 number or a BSUID); raises
        MissingVariablesError when a variable (or a media header's media, or a button's value) is lacking.
        ``header_media`` overrides the broadcast's.

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
        if not self.plain:
            self._component_parameters(components, header_media, buttons or {})
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        # Meta rejects components without parameters, so a template without variables sends none at all.
        if components:
            template["components"] = components
        # A BSUID (a recipient given by ``user_id``) goes out as Meta's ``recipient``, a number as ``to``.
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            ("recipient" if is_bsuid(to) else "to"): to,
            "type": "template",
            "template": template,
        }
        if callback is not None:
            body["biz_opaque_callback_data"] = callback
        return body


# --- the send's reference in biz_opaque_callback_data (docs/rules.md) ------------------------------------------
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

"""Reads of channels and templates."""

from templates_registry.models import Channel, Template
from tokens.models import Organization


def channel_find(*, ref: str, organization: Organization | None = None) -> Channel | None:
    """The channel whose id or Meta ``phone_number_id`` is ``ref`` (the seed uses both meanings).

    With ``organization``, a channel of another organization is not found: it does not exist for it.
    """
    ref = (ref or "").strip()
    if not ref:
        return None
    channels = Channel.objects.select_related("organization")
    if organization is not None:
        channels = channels.filter(organization=organization)
    channel = channels.filter(pk=ref).first() if len(ref) == 24 else None
    return channel or channels.filter(phone_number_id=ref).first()


def template_find(*, waba_id: str, name: str, language: str) -> Template | None:
    """The template ``name`` in ``language`` of a WhatsApp Business account, whatever its status."""
    return Template.objects.filter(waba_id=waba_id, name=name, language=language).first()


def template_list_for_channel(*, channel: Channel) -> list[Template]:
    return list(Template.objects.filter(waba_id=channel.waba_id).order_by("name", "language"))

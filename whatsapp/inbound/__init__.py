"""Meta's webhook envelope (docs/rules.md) read into plain dataclasses. Pure: no database, no settings.

An envelope is ``{"object": ..., "entry": [{"id": <WABA id>, "changes": [{"field": ..., "value": {...}}]}]}``.
Kinds of change that carry something: ``messages`` changes with ``statuses[]`` (delivery receipts, one
``StatusUpdate`` each), ``message_template_status_update`` (one ``TemplateStatusUpdate``, with the entry's
``time``), ``template_category_update`` (``TemplateCategoryUpdate``), ``message_template_quality_update``
(``TemplateQualityUpdate``) and ``user_preferences`` (one ``UserPreferenceUpdate`` per item of its
``user_preferences[]``). Every other change Meta sends (incoming messages, account and call updates, ...) is an
``OtherChange`` (``limits_parse`` reads the incoming messages and the limit's updates apart).
Malformed parts (an entry or change that is not an object, a value that is not an object, a status without an
id) are skipped, never raised: Meta retries any non-2xx answer, so a bad part must not block the good ones.

Each kind has a parser of one ``Change`` (an entry's id and time, a field, a value) into a list of items:
``envelope_parse`` and ``limits_parse`` read a whole envelope with them (``ENVELOPE_PARSERS``, ``LIMITS_PARSERS``).
Who applies what: ``broadcasts/status_updates/inbound.py`` routes the statuses to ``broadcasts/status_updates/`` and the
template updates to ``templates_registry/services.py``.

Modules (import from them; this package re-exports nothing):
- ``envelope``: ``envelope_parse`` and ``limits_parse``, a whole envelope by field; ``OtherChange``;
- ``statuses``: ``statuses[]`` into ``StatusUpdate`` (``status_update_parse``: one item);
- ``templates``: the template status, category and quality updates;
- ``users``: ``user_preferences`` (``UserPreferenceUpdate``) and incoming ``messages[]`` (``InboundMessage``);
- ``limits``: ``business_capability_update`` and ``phone_number_quality_update``;
- ``changes``: ``Change`` and ``changes_read`` (the envelope's well-formed changes), and the readers the parsers share.
"""

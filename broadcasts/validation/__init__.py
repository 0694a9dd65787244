"""Shape and field rules of a ``POST /v1/messages/bulk`` body (docs/api.md).

Pure functions over the parsed JSON: no database. Every error is collected under its path
(``recipients[17].to``) so the client sees all of them at once. The service adds the rules that
need the database (channel, template) and decides which variables are missing.

Modules (import from them; this package re-exports nothing):
- ``request``: ``bulk_request_validate``, the whole body (entry point), its top-level fields and ``BulkRequest``;
- ``recipients``: ``recipients[]``: each ``to`` (E.164), ``variables`` and ``meta_data``, into ``RecipientInput``;
- ``components``: ``header_media`` and ``buttons`` well formed (the broadcast's and each recipient's own);
- ``scheduling``: ``scheduled_at``;
- ``template_checks``: the rules that need the template: its header's media, its buttons and their bounds;
- ``errors``: ``Errors`` (path -> messages) and ``error_add``.
"""

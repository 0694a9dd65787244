"""TEMPORARY forwarding module for the merge of issue 13: delete it once no file imports ``events.publisher``.

The publisher moved to ``broadcasts/notifications.py`` (events knows nothing of broadcasts). The engine's files,
owned by another branch, still import it from here until the lead's sed
``from events.publisher import`` -> ``from broadcasts.notifications import``.
"""

from broadcasts.notifications import broadcast_event_publish, message_events_publish  # noqa: F401

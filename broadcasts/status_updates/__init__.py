"""Meta's delivery statuses applied to sends (docs/rules.md): forward only, in bulk.

A send moves SENT < DELIVERED < READ, or to FAILED from SENT or DELIVERED; nothing else.
Every UPDATE carries the allowed "from" statuses in its WHERE clause, so a concurrent webhook,
a redelivery or an out-of-order status can never move a send backwards or change it twice.
A body of N statuses costs a fixed number of statements whatever N is: the read of the sends with their channel
and billing columns (one statement: one index probe per callback reference or wamid, a plan that needs no
statistics; a redelivery stops there), the rate card's id when something is billable, the lock of their broadcast
rows (the lock order of broadcasts/counts.py), at most one UPDATE per target status (billing included), and one
UPDATE of the kept counts and the bill per broadcast. A 1,000-status ``delivered`` body that bills: 8 statements
with BEGIN, COMMIT and the events' endpoint read (9 the first time a process reads a card's prices).

A status whose wamid no send carries yet (the engine records wamids a fraction of a second after Meta's answer,
and a fast webhook can arrive first) is kept as an ``UnmatchedStatus`` and re-applied by the beat task
``broadcasts.unmatched_statuses_retry`` for ``UNMATCHED_KEEP``, then dropped as belonging to no broadcast of ours.

Modules (import from them; this package re-exports nothing):
- ``apply``: ``sends_apply_statuses``, the whole of one body (entry point);
- ``matching``: the sends of the statuses, by callback data (settling a send whose outcome was unknown) or wamid;
- ``folding``: what one body says of each wamid, folded into the single move it implies;
- ``moves``: the guarded UPDATEs of those moves (one statement per target status);
- ``billing``: Meta's ``pricing`` stored with the send and the send billed once (docs/rules.md);
- ``failure_effects``: what a ``failed`` status starts besides the move (131049 holds, 131050 opt-outs);
- ``unmatched``: statuses of wamids no send carries yet, kept and retried by beat.
"""

"""The delivery engine: fan a broadcast out to the workers and post its sends at the channel's speed.

The database is the truth; the broker only wakes workers. A broadcast moves like this:

1. dispatch.py: ``broadcast_dispatch`` starts it (lifecycle.broadcasts_start: PENDING -> IN_PROGRESS once, when
   due) and enqueues chunk tasks ("chunk" = one task's id range of the broadcast's sends) over its due, unleased
   PENDING sends; it also schedules a wake for the earliest retry due later.
2. pump.py: ``send_chunk_deliver`` (the chunk task) takes one of the channel's running places, CLAIMS sends with
   one conditional UPDATE (claims.py: PENDING, due, no live lease -> lease, attempts + 1), so a chunk that runs
   twice does nothing the second time, and runs a ``ChannelPump`` (channel_pump.py) on a ``PumpHost``, which may
   take on other channels' pumps beside it. A ``BroadcastRun`` (run.py) posts the claimed sends on the thread's
   asyncio loop (runtime.py) within the channel's cap (pacing.py over limiter.py): its planning step
   (planning.py) marks each batch past the posting gate (claims.py) and the admission gates (gates/) and
   reserves its slots, its posting side (run_posting.py) fires them, and its outcome keeping (run_outcomes.py)
   records Meta's answers (outcomes.py) with a bulk UPDATE every ~0.5 s, checking at that beat whether the
   broadcast was paused or cancelled. When a broadcast has nothing left to claim, the pump goes on with the
   channel's next running broadcast in the same run.
3. When nothing is pending, the broadcast becomes COMPLETED (or FAILED: no send ever accepted), exactly once
   (lifecycle.broadcast_finalize).

Lost messages, killed workers and an emptied Redis are recovered by the beat sweeper (broadcasts/delivery/recovery.py).
Import from the submodules; this package re-exports nothing.
"""

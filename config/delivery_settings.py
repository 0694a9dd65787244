"""The delivery engine's settings (broadcasts/delivery/), read by config/settings.py: every knob is an environment
variable so the test and benchmark worker processes can shorten it."""

import environ

env = environ.Env()

# Every knob is an environment variable so the test and benchmark worker processes can shorten it.
# Chunk = one task's share of a broadcast, sized to ~DELIVERY_CHUNK_SECONDS of the channel's cap (bounds kept
# between 10 and 500 sends: one claim UPDATE and a few outcome UPDATEs per chunk).
DELIVERY_CHUNK_SECONDS = env.float("DELIVERY_CHUNK_SECONDS", default=2.0)
DELIVERY_CHUNK_MAX = env.int("DELIVERY_CHUNK_MAX", default=500)
# A chunk holds its sends this long; past it the sweeper takes them back. It must outlast the chunk's hard time
# limit (lease - 5 s) and a chunk stops posting after a third of it, so a live worker's sends are never taken.
DELIVERY_LEASE_SECONDS = env.float("DELIVERY_LEASE_SECONDS", default=60.0)
# Up to 6 POSTs in all per send (docs/rules.md); backoff base * 2^(attempt-1), +-25 % jitter, capped.
DELIVERY_MAX_ATTEMPTS = 6
DELIVERY_RETRY_BASE_SECONDS = env.float("DELIVERY_RETRY_BASE_SECONDS", default=2.0)
DELIVERY_RETRY_MAX_SECONDS = env.float("DELIVERY_RETRY_MAX_SECONDS", default=60.0)
# An attempt whose outcome is unknown (read timeout after the request left, worker killed) is posted again no
# sooner than max(its backoff, this), and only if no status webhook with its callback data came meanwhile
# (docs/rules.md).
DELIVERY_UNKNOWN_GRACE_SECONDS = env.float("DELIVERY_UNKNOWN_GRACE_SECONDS", default=60.0)
# Graph API timeouts: connecting (request never left: no unknown outcome) and reading the answer (unknown).
DELIVERY_CONNECT_TIMEOUT_SECONDS = env.float("DELIVERY_CONNECT_TIMEOUT_SECONDS", default=5.0)
DELIVERY_READ_TIMEOUT_SECONDS = env.float("DELIVERY_READ_TIMEOUT_SECONDS", default=15.0)
# Sends in flight per worker process (a 1000 mps channel at 50 ms latency keeps ~50 in flight).
DELIVERY_MAX_IN_FLIGHT = env.int("DELIVERY_MAX_IN_FLIGHT", default=256)
# Pace at this fraction of max_mps (the shared GCRA schedule): room for POSTs that leave or arrive a little late.
DELIVERY_RATE_HEADROOM = env.float("DELIVERY_RATE_HEADROOM", default=0.97)
# And each pump never lets more than max_mps * (1 - margin) (at least 2 fewer) POSTs out in any sliding second of
# its own clock, less what its recent lateness and slow answers say may arrive bunched
# (broadcasts.delivery.pacing.PostLog):
# the way to Meta adds jitter (client to sandbox on the loaded 2-core box: p99 2 ms, stalls up to ~50 ms).
DELIVERY_WINDOW_MARGIN = env.float("DELIVERY_WINDOW_MARGIN", default=0.025)
# Chunk tasks ("pumps") of one channel running at once, over all workers. One pump keeps a 1000 mps channel busy
# and paces its own POSTs exactly; more would only interleave. The others wait in the queue, so four channels'
# broadcasts share the workers instead of the first channel hogging them.
DELIVERY_CHANNEL_PARALLELISM = env.int("DELIVERY_CHANNEL_PARALLELISM", default=1)
# Same number, same channel: at most once per this many seconds (docs/rules.md: 6 s), plus the slot look-ahead.
DELIVERY_SAME_NUMBER_SECONDS = env.float("DELIVERY_SAME_NUMBER_SECONDS", default=6.0)
# Meta's per-user marketing limit (131049): no MARKETING send to that number of the organization for this long
# after the failure (docs/rules.md; broadcasts/rules/marketing_holds.py). Shortened only by tests.
MARKETING_LIMIT_HOLD_SECONDS = env.float("MARKETING_LIMIT_HOLD_SECONDS", default=86400.0)
# Regions Meta delivers no MARKETING template to (ISO 3166 alpha-2, libphonenumber's region of a number or a BSUID's
# prefix): such sends fail ``marketing_region_blocked`` without a call (broadcasts/rules/marketing_regions.py).
MARKETING_BLOCKED_REGIONS = [r.strip().upper() for r in env.list("MARKETING_BLOCKED_REGIONS", default=["US"])]
# Sends of broadcasts that ended more than this many days ago are deleted (counts stay on the broadcast).
RETENTION_DAYS = env.int("RETENTION_DAYS", default=90)
# Beat periods: scheduled broadcasts start within 15 s of scheduled_at; the sweeper recovers lost work.
DELIVERY_START_DUE_INTERVAL = env.float("DELIVERY_START_DUE_INTERVAL", default=5.0)
DELIVERY_SWEEP_INTERVAL = env.float("DELIVERY_SWEEP_INTERVAL", default=10.0)
# Fairness (docs/rules.md): a running pump task also serves other channels that want a pump, on its one event loop,
# so a new broadcast never waits for a free worker process. It looks for them this often, and takes one on while
# the caps of the channels it serves sum to less than DELIVERY_PUMP_RATE (sends/s), or at any rate when the
# channel's due work is at most DELIVERY_PUMP_SMALL_WORK sends (a small broadcast), up to DELIVERY_PUMP_CHANNELS.
# DELIVERY_PUMP_HOSTING=false: one channel per pump task again (a small broadcast then waits for a free process).
DELIVERY_PUMP_HOSTING = env.bool("DELIVERY_PUMP_HOSTING", default=True)
DELIVERY_PUMP_ADOPT_INTERVAL = env.float("DELIVERY_PUMP_ADOPT_INTERVAL", default=0.1)
# Big work is hosted up to 500 sends/s of caps per loop (about half of what one process posts): every busy channel
# is served at once, spread over the processes (a 1000 mps channel keeps a process of its own, two at 250 share
# one). Measured on the 2-core box (bench (e0)/(e), 8 x 250 mps busy on 4 processes): with 500 all eight send and
# every second at the sandbox stays within ~2 % of the cap, since the planning step's Redis calls left the loop;
# with 0 (big work never hosted) four channels waited up to a pump's whole turn (20 s) with nothing sent.
DELIVERY_PUMP_RATE = env.int("DELIVERY_PUMP_RATE", default=500)
DELIVERY_PUMP_SMALL_WORK = env.int("DELIVERY_PUMP_SMALL_WORK", default=50)
DELIVERY_PUMP_CHANNELS = env.int("DELIVERY_PUMP_CHANNELS", default=16)
# Database threads (one connection each) a worker process adds for the pumps its host serves; pumps share them
# past that. Connections per worker process: at most 2 + DELIVERY_PUMP_DB_LANES.
DELIVERY_PUMP_DB_LANES = env.int("DELIVERY_PUMP_DB_LANES", default=4)
# Category lanes (docs/rules.md): a pump host looks every DELIVERY_PUMP_ADOPT_INTERVAL for due AUTHENTICATION and
# UTILITY broadcasts on the channels it serves and starts them beside the running MARKETING ones. false: a channel's
# broadcasts go one after another (a one-time password may wait behind a promotion for a pump's whole turn).
DELIVERY_LANES = env.bool("DELIVERY_LANES", default=True)

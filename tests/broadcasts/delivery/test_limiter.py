"""The per-channel cap (GCRA in one Redis Lua script), number holds and the channel's running-chunk-task places."""

import threading
import time

import pytest

from broadcasts.delivery import limiter
from tests.delivery_support import max_in_any_second

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.slow)], autouse=True)
def engine_redis(request) -> str:
    """Every test here runs on the single test Redis and again on a real three-node Redis Cluster."""
    if request.param == "cluster":
        request.getfixturevalue("limiter_on_cluster")
    return request.param


def test_reserve_grants_consecutive_slots_spaced_by_the_rate(settings):
    # Given a channel capped at 100/s paced at 97 %
    settings.DELIVERY_RATE_HEADROOM = 0.97
    interval = 1 / 97
    # that sent before (a channel's very first schedule starts past a horizon: see the flush test below)
    limiter.channel_reserve(channel_id="c1", max_mps=100, want=1)
    time.sleep(0.3)

    # When two batches are reserved back to back
    first = limiter.channel_reserve(channel_id="c1", max_mps=100, want=5)
    second = limiter.channel_reserve(channel_id="c1", max_mps=100, want=5)

    # Then each slot follows the previous one by one interval, across batches, and starts after the lead time
    assert (first.count, second.count) == (5, 5)
    times = first.slot_times() + second.slot_times()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # (across two grants: each is mapped onto this clock when its answer is here, within a round trip)
    assert all(abs(gap - interval) < 0.005 for gap in gaps), gaps
    assert first.first_at >= time.monotonic() - 0.01


def test_reserve_never_grants_beyond_the_horizon():
    # Given a channel at 10/s (one slot per ~103 ms) and a worker asking for 50 slots
    grant = limiter.channel_reserve(channel_id="c2", max_mps=10, want=50)

    # Then it gets only the slots within the horizon; asking again at once gives none, with the time to come back
    assert grant.count == 1
    again = limiter.channel_reserve(channel_id="c2", max_mps=10, want=50)
    assert again.count == 0
    assert again.first_at > time.monotonic()


def test_no_burst_after_a_stall():
    # Given a channel that was used, then idle for 0.5 s
    limiter.channel_reserve(channel_id="c3", max_mps=50, want=5)
    time.sleep(0.5)

    # When a worker comes back
    grant = limiter.channel_reserve(channel_id="c3", max_mps=50, want=100)

    # Then unused time was not saved up: the slots start now, one interval apart, within the horizon only
    assert grant.count <= int(50 * (limiter.HORIZON_SECONDS + limiter.LEAD_SECONDS)) + 1
    assert grant.interval >= 1 / 50


def test_concurrent_reservers_never_exceed_the_cap_in_any_sliding_second():
    # Given three threads (as three workers) reserving slots of one 40/s channel for 2.2 s
    slots: list[float] = []
    lock = threading.Lock()

    def reserve_loop() -> None:
        end = time.monotonic() + 2.2
        while time.monotonic() < end:
            grant = limiter.channel_reserve(channel_id="c4", max_mps=40, want=3)
            with lock:
                slots.extend(grant.slot_times())
            time.sleep(0.01)

    threads = [threading.Thread(target=reserve_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then no one-second window of granted slots holds more than 40, and the channel was used (~38.8/s)
    assert max_in_any_second(slots) <= 40
    assert len(slots) >= 75


def test_a_flushall_between_grants_never_overlaps_the_slots_granted_before_it(settings):
    # Given two threads (as two workers) reserving slots of one 20/s channel (paced at 18/s), and Redis emptied
    # (FLUSHALL) three times while they do: slots granted before each flush are still to be fired after it
    settings.DELIVERY_RATE_HEADROOM = 0.97
    settings.DELIVERY_WINDOW_MARGIN = 0.025
    interval = 1 / limiter.effective_rate(20)
    slots: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def reserve_loop() -> None:
        while not stop.is_set():
            grant = limiter.channel_reserve(channel_id="flushed", max_mps=20, want=4)
            with lock:
                slots.extend(grant.slot_times())
            time.sleep(0.005)

    threads = [threading.Thread(target=reserve_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            time.sleep(0.5)
            limiter.redis_client().flushall()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    # Then the schedule after each flush starts past every slot granted before it (a schedule restarted at "now"
    # interleaves with those, leaving a gap of half an interval or less somewhere; grants map onto this clock
    # within a round trip, hence half an interval, not a whole one), never more than the cap in any sliding
    # second, and the channel was still used
    slots.sort()
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) > interval / 2, sorted(gaps)[:5]
    assert max_in_any_second(slots) <= 20
    assert len(slots) >= 25


def test_an_idle_channel_in_a_live_redis_starts_at_once():
    # Given a channel that sent before, whose schedule key has expired since (idle) while Redis kept running
    limiter.channel_reserve(channel_id="idle", max_mps=20, want=1)
    limiter.redis_client().delete(limiter.channel_key("idle", "rate"))

    # When it sends again, its first slot is the lead time away, not pushed past a horizon
    before = time.monotonic()
    grant = limiter.channel_reserve(channel_id="idle", max_mps=20, want=2)
    assert grant.count == 2
    assert grant.first_at - before < limiter.LEAD_SECONDS + 0.01


def test_number_hold_defers_the_same_number_and_releases_only_its_own_hold():
    # Given a number claimed for a send
    assert limiter.numbers_claim(channel_id="c5", numbers=["+1"], hold_seconds=6.5, tokens=["10"]) == [0.0]

    # When it is claimed again (another send to it), and released by someone else
    waits = limiter.numbers_claim(channel_id="c5", numbers=["+1", "+2"], hold_seconds=6.5, tokens=["11", "12"])
    limiter.numbers_release(channel_id="c5", number="+1", token="11")

    # Then the second send must wait ~6.5 s (the other number is free), and the first hold still stands
    assert 6.0 < waits[0] <= 6.5 and waits[1] == 0.0
    assert limiter.numbers_claim(channel_id="c5", numbers=["+1"], hold_seconds=6.5, tokens=["13"])[0] > 0
    # the same number on another channel is free
    assert limiter.numbers_claim(channel_id="other", numbers=["+1"], hold_seconds=6.5, tokens=["14"]) == [0.0]

    # When its own holder releases it (Meta refused the message: nothing was delivered)
    limiter.numbers_release(channel_id="c5", number="+1", token="10")

    # Then the number is free at once
    assert limiter.numbers_claim(channel_id="c5", numbers=["+1"], hold_seconds=6.5, tokens=["15"]) == [0.0]


def test_channel_running_places_are_limited_and_expire():
    # Given a channel allowing one running chunk task
    assert limiter.channel_slot_acquire(channel_id="c6", holder="a", limit=1, hold_seconds=0.3)

    # Then a second one is refused until the first is released or its hold expires
    assert not limiter.channel_slot_acquire(channel_id="c6", holder="b", limit=1, hold_seconds=0.3)
    time.sleep(0.35)
    assert limiter.channel_slot_acquire(channel_id="c6", holder="b", limit=1, hold_seconds=5)
    limiter.channel_slot_release(channel_id="c6", holder="b")
    assert limiter.channel_slot_acquire(channel_id="c6", holder="c", limit=1, hold_seconds=5)


def test_every_key_of_a_channel_shares_one_hash_tag():
    # Given a channel's keys (cap, a number hold, its running places)
    keys = [
        limiter.channel_key("ch1", "rate"),
        limiter.channel_key("ch1", "number:+1"),
        limiter.channel_key("ch1", "running"),
    ]

    # Then a Redis Cluster hashes them all by the same tag, which no other channel's keys carry
    tags = {key[key.index("{") + 1 : key.index("}")] for key in keys}
    assert tags == {"ch:ch1"}
    assert "{ch:ch2}" in limiter.channel_key("ch2", "rate")


def _skewed_clock(monkeypatch, *, thread_name: str, skew: float) -> None:
    """time.time() off by ``skew`` seconds in the thread named ``thread_name`` only (as on another machine)."""
    real = time.time

    def skewed() -> float:
        return real() + (skew if threading.current_thread().name == thread_name else 0.0)

    monkeypatch.setattr(time, "time", skewed)


@pytest.mark.parametrize("skew", [5.0, -5.0])
def test_a_caller_whose_clock_is_skewed_paces_exactly_with_an_unskewed_one(monkeypatch, skew):
    # Given two callers on one 40/s channel, one of them on a machine whose clock is `skew` seconds off
    _skewed_clock(monkeypatch, thread_name="skewed", skew=skew)
    slots: dict[str, list[float]] = {"skewed": [], "plain": []}

    def reserve_loop() -> None:
        name = threading.current_thread().name
        end = time.monotonic() + 2.2
        while time.monotonic() < end:
            grant = limiter.channel_reserve(channel_id=f"skew{skew}", max_mps=40, want=3)
            slots[name].extend(grant.slot_times())
            time.sleep(0.01)

    threads = [threading.Thread(target=reserve_loop, name=name) for name in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then both got their share of the slots (a schedule read on the skewed clock would grant it none, or all of
    # them at once), together never more than the cap in any sliding second, and the channel was used (~38.8/s)
    merged = sorted(slots["skewed"] + slots["plain"])
    assert len(slots["skewed"]) >= 15 and len(slots["plain"]) >= 15
    assert max_in_any_second(merged) <= 40
    assert len(merged) >= 75


def _in_thread(name: str, call):
    """``call()``'s result, run in a thread of that name (whose clock _skewed_clock may have moved)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(call()), name=name)
    thread.start()
    thread.join()
    return out[0]


def test_running_places_expire_on_redis_clock_whatever_the_holders_clock(monkeypatch):
    # Given a holder whose clock runs 5 s ahead takes a channel's only place for 0.3 s
    _skewed_clock(monkeypatch, thread_name="ahead", skew=5.0)
    taken = _in_thread(
        "ahead", lambda: limiter.channel_slot_acquire(channel_id="c9", holder="ahead", limit=1, hold_seconds=0.3)
    )
    assert taken is True

    # Then an unskewed caller is refused while the place is held, and gets it once 0.3 s passed (not 5.3 s)
    assert not limiter.channel_slot_acquire(channel_id="c9", holder="plain", limit=1, hold_seconds=5)
    time.sleep(0.4)
    assert limiter.channel_slot_acquire(channel_id="c9", holder="plain", limit=1, hold_seconds=5)

    # And a caller whose clock runs 5 s behind cannot take the place a live holder has
    _skewed_clock(monkeypatch, thread_name="behind", skew=-5.0)
    refused = _in_thread(
        "behind", lambda: limiter.channel_slot_acquire(channel_id="c9", holder="behind", limit=1, hold_seconds=5)
    )
    assert refused is False

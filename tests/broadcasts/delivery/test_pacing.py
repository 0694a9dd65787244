"""The pump's one-second log: the guard on the channel cap for when POSTs do not leave at their slots."""

import time

import pytest

from broadcasts import ratelimit
from broadcasts.delivery import PostLog


@pytest.fixture(autouse=True)
def _margins(settings):
    settings.DELIVERY_RATE_HEADROOM = 0.97
    settings.DELIVERY_WINDOW_MARGIN = 0.025


def _log(max_mps: int = 100) -> PostLog:
    return PostLog(max_mps=max_mps)


@pytest.mark.parametrize(
    ("max_mps", "budget", "rate"),
    [(1000, 975, 970.0), (80, 78, 77.6), (20, 18, 18.0), (5, 4, 4.0), (2, 2, 1.94), (1, 1, 0.97)],
)
def test_budget_is_the_cap_less_the_margin_and_the_rate_stays_within_it(max_mps, budget, rate):
    assert _log(max_mps).budget() == budget
    assert ratelimit.effective_rate(max_mps) == pytest.approx(rate)


def test_full_at_the_budget_within_one_second_and_free_again_a_second_after_the_first():
    log = _log()  # budget 97
    start = time.monotonic()
    for i in range(97):
        at = start + i * 0.001
        assert not log.full(at)
        log.record(at, slot=at)
    assert log.full(start + 0.5)
    assert log.free_at() == start + 1.0
    assert not log.full(start + 1.0001)


def test_a_late_loop_lowers_the_budget_for_a_while():
    log = _log(max_mps=1000)
    start = time.monotonic()
    assert not log.full(start)
    # A slot fired 20 ms late: what a stall this long may bunch (rate x 20 ms) is kept aside
    log.record(start, slot=start - 0.020)
    assert log.budget() == 975 - 19
    # and given back as the lag decays (half-life 1 s)
    log.full(start + 1.0)
    assert log.budget() == 975 - 9
    log.full(start + 10.0)
    assert log.budget() == 975


def test_time_held_back_by_the_log_itself_is_not_lateness():
    log = _log()  # budget 97
    start = time.monotonic()
    for i in range(97):
        log.record(start + i * 0.001, slot=start + i * 0.001)
    # A slot due at +0.5 s waits for the log to free a place (+1.0 s) and then leaves on time
    assert log.full(start + 0.5)
    log.full(start + 1.0001)
    log.record(start + 1.0002, slot=start + 0.5)
    assert log.budget() == 97


def test_answers_slower_than_the_quickest_lower_the_budget_up_to_a_bound():
    log = _log(max_mps=1000)
    log.answered(0.050)
    log.answered(0.051)
    assert log.budget() == 975
    # An answer 30 ms slower than the quickest: POSTs queued somewhere on the way, and may arrive bunched
    log.answered(0.080)
    assert log.budget() == 975 - 29
    # A timeout counts as no more than 50 ms of bunching
    log.answered(15.0)
    assert log.budget() == 975 - 48

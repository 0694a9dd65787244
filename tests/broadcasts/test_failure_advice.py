"""broadcasts/rules/failure_advice.py: every code the engine can store on a failed send or in a paused reason has
advice of its own, and each class of code says the right kind of thing to do."""

import re
from pathlib import Path

import pytest

from broadcasts.delivery.gates.consent import OPTED_OUT
from broadcasts.delivery.outcomes import NOT_POSTED_CODES
from broadcasts.pricing import BUDGET_EXCEEDED
from broadcasts.rules import template_pauses
from broadcasts.rules.failure_advice import ADVICE, Fix, Kind, advice_for, advice_named
from broadcasts.rules.frequency_cap import FREQUENCY_CAPPED
from broadcasts.rules.marketing_regions import MARKETING_REGION_BLOCKED
from broadcasts.send_rows import MISSING_VARIABLES
from whatsapp import errors

ROOT = Path(__file__).resolve().parents[2]
# Where the engine writes a code on a send or a paused reason.
ENGINE_SOURCES = [
    ROOT / "whatsapp" / "client.py",
    ROOT / "whatsapp" / "errors.py",
    ROOT / "broadcasts" / "lifecycle.py",
    *sorted((ROOT / "broadcasts" / "delivery").rglob("*.py")),
    *sorted((ROOT / "broadcasts" / "rules").glob("*.py")),
    *sorted((ROOT / "broadcasts" / "status_updates").glob("*.py")),
]
CODE_LITERAL = re.compile(r'(?:\berror_code|\bcode)=\s*"([a-z0-9_]+)"|"code":\s*"([a-z0-9_]+)"')

META_CODES = sorted(
    errors.TRANSIENT_CODES | errors.PERMANENT_CODES | errors.ACCOUNT_CODES | errors.TEMPLATE_CODES | set(errors.TITLES)
)
OUR_CODES = sorted(
    {
        OPTED_OUT,
        FREQUENCY_CAPPED,
        MARKETING_REGION_BLOCKED,
        MISSING_VARIABLES,
        BUDGET_EXCEEDED,
        *NOT_POSTED_CODES,
        *template_pauses.PAUSING_TEMPLATE_STATUSES.values(),
        *template_pauses.PAUSING_ERROR_CODES.values(),
        "manual",
        "timeout",
        "connection_error",
        "connection_lost",
        "no_response",
    }
)


def literal_codes() -> set[str]:
    found = set()
    for path in ENGINE_SOURCES:
        for match in CODE_LITERAL.finditer(path.read_text()):
            found.add(match.group(1) or match.group(2))
    return found


def test_the_source_scan_finds_the_codes_it_is_meant_to():
    # the scan must keep working: these literals are in the engine today
    assert {"connection_error", "timeout", "connection_lost", "missing_variables", "manual"} <= literal_codes()


@pytest.mark.parametrize("code", [str(code) for code in META_CODES] + OUR_CODES + sorted(literal_codes()))
def test_every_code_the_engine_produces_has_its_own_advice(code):
    advice = advice_named(code)
    assert advice is not None, f"{code} has no advice of its own"
    assert advice.meaning.strip() and advice.action.strip()


@pytest.mark.parametrize("code", [str(n) for n in range(200, 300)] + [f"http_{s}" for s in (400, 403, 429, 500, 503)])
def test_ranges_have_advice(code):
    assert advice_named(code) is not None


def test_retry_is_advised_exactly_where_the_engine_marks_failures_retryable():
    for code in errors.TRANSIENT_CODES:
        assert advice_for(str(code)).retry, code
    for code in errors.PERMANENT_CODES - errors.RETRYABLE_PERMANENT_CODES:
        assert not advice_for(str(code)).retry, code
    assert advice_for("131049").retry and advice_for(FREQUENCY_CAPPED).retry


def test_the_classes_say_what_to_do():
    token = advice_for("190")
    assert token.kind is Kind.ACCOUNT and token.fix is Fix.CHANNEL
    assert "replace the channel's access token" in token.action.lower() and "resume" in token.action.lower()
    assert advice_for("131031").kind is Kind.ACCOUNT and advice_for("368").kind is Kind.ACCOUNT
    paused = advice_for("template_paused")
    assert paused.kind is Kind.TEMPLATE and paused.fix is Fix.TEMPLATE and "wait for meta" in paused.action.lower()
    assert advice_for("132015") == paused
    for opted_out in ("131050", OPTED_OUT):
        assert advice_for(opted_out).kind is Kind.OPTED_OUT and advice_for(opted_out).action.startswith("Nothing")
    assert advice_for("130429").kind is Kind.RATE and advice_for("http_429").kind is Kind.RATE
    assert advice_for("131000").kind is Kind.TRANSIENT and advice_for("131000").action == "Retry."
    assert advice_for("http_503").kind is Kind.TRANSIENT


def test_an_unknown_meta_code_falls_back_to_its_class():
    assert advice_named("131999") is None
    assert advice_for("131999").kind is Kind.REQUEST and not advice_for("131999").retry  # permanent: no blind retry
    assert advice_for("250").kind is Kind.ACCOUNT


def test_the_table_names_no_code_twice_in_different_spellings():
    assert all(code == code.strip() and (code.isdecimal() or code.islower()) for code in ADVICE)

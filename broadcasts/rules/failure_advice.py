"""What each failure or pause code means and what an operator does about it (docs/rules.md, "What each code
means"): plain data, read by the admin's broadcast page beside its failures and its paused reason.

Every code the engine can store on a send or in a paused reason has its own row (tests/broadcasts/rules/
test_failure_advice.py holds the engine's codes against this table); a code Meta invents later falls back to its
class's advice, from the one classification table (whatsapp/errors.py).
"""

from enum import StrEnum
from typing import NamedTuple

from whatsapp.errors import ErrorClass, classify


class Kind(StrEnum):
    ACCOUNT = "account"  # the number, token or business account: the broadcast pauses; fix it, then Resume
    TEMPLATE = "template"  # Meta paused or disabled the template
    RATE = "rate"  # a rate or throughput limit
    TRANSIENT = "transient"  # Meta or the network failed for a while
    HELD = "held"  # held back on purpose (a per-user limit, our frequency cap): Retry later
    OPTED_OUT = "opted_out"  # the person does not want it: nothing to do
    RECIPIENT = "recipient"  # that number cannot get it
    REQUEST = "request"  # what was sent does not fit the template
    PAUSE = "pause"  # a pause of ours (on request, the cost cap)


class Fix(StrEnum):
    """Which admin page the fix is on (the page links to it)."""

    NONE = ""
    CHANNEL = "channel"
    TEMPLATE = "template"


class Advice(NamedTuple):
    kind: Kind
    meaning: str
    action: str
    retry: bool = False  # a Retry of this code can help
    fix: Fix = Fix.NONE


_TOKEN = Advice(
    Kind.ACCOUNT,
    "The channel's access token expired or is invalid.",
    "Replace the channel's access token (a new system-user token), then Resume.",
    fix=Fix.CHANNEL,
)
_PERMISSION = Advice(
    Kind.ACCOUNT,
    "The token lacks whatsapp_business_messaging, or the number is not attached to the app.",
    "Fix the token's permissions or the app's assets in Meta Business settings, then Resume.",
    fix=Fix.CHANNEL,
)
_THROUGHPUT = Advice(
    Kind.RATE,
    "More messages per second than Meta allows this number.",
    "Should not happen (the service paces under the channel's max_mps): lower the channel's max_mps or find "
    "another sender on the same number, then Retry.",
    retry=True,
    fix=Fix.CHANNEL,
)
_TRANSIENT = Advice(
    Kind.TRANSIENT,
    "Meta or the network failed for a while; the engine retried with backoff and gave up.",
    "Retry.",
    retry=True,
)
_NO_ANSWER = Advice(
    Kind.TRANSIENT,
    "No answer from Meta in time, or the connection dropped: the message may or may not have gone out.",
    "Retry (a message that did go out may arrive twice).",
    retry=True,
)
_PARAMETERS = Advice(
    Kind.REQUEST,
    "The template's parameters do not match what was sent (count or format).",
    "The template changed on Meta's side: run sync_templates for the channel, check the variables, send the "
    "fixed ones in a new broadcast.",
    fix=Fix.TEMPLATE,
)
_INVALID = Advice(
    Kind.REQUEST,
    "Meta refused a parameter of the message (a variable, the media, a button).",
    "Check the recipients' variables and media against the template; send the fixed ones in a new broadcast.",
)
_TEMPLATE_PAUSED = Advice(
    Kind.TEMPLATE,
    "Meta paused the template for low quality.",
    "Wait for Meta to approve it again (its status comes by webhook or sync_templates), or change the template; "
    "then Resume.",
    fix=Fix.TEMPLATE,
)
_TEMPLATE_DISABLED = Advice(
    Kind.TEMPLATE,
    "Meta disabled the template for low quality.",
    "Change the template: cancel and send the rest with another approved template.",
    fix=Fix.TEMPLATE,
)

# Codes are strings everywhere: Meta's as decimal strings, ours as words.
ADVICE: dict[str, Advice] = {
    # Account-level: the broadcast pauses at once.
    "0": _TOKEN,
    "190": _TOKEN,
    "10": _PERMISSION,
    "368": Advice(
        Kind.ACCOUNT,
        "The business is temporarily blocked for policy violations.",
        "Wait out the block and read Meta's policy notice in WhatsApp Manager; Resume after.",
    ),
    "131031": Advice(
        Kind.ACCOUNT,
        "The business account is locked.",
        "Resolve it with Meta Business support; Resume after.",
    ),
    "131042": Advice(
        Kind.ACCOUNT,
        "A payment problem on the business account.",
        "Fix the payment method in WhatsApp Manager, then Resume.",
    ),
    "131048": Advice(
        Kind.ACCOUNT,
        "Spam rate limit: too many messages from this number were blocked or reported.",
        "Do not resume at once: check the number's and the template's quality in WhatsApp Manager; resume later, "
        "smaller and better targeted.",
    ),
    # Template-level: the broadcast pauses.
    "132015": _TEMPLATE_PAUSED,
    "132016": _TEMPLATE_DISABLED,
    # Rate and limits.
    "4": _THROUGHPUT,
    "80007": _THROUGHPUT,
    "130429": _THROUGHPUT,
    "131056": Advice(
        Kind.RATE,
        "Pair rate limit: the same number was messaged too often.",
        "Many of these mean several systems message the same people. Retry.",
        retry=True,
    ),
    "131049": Advice(
        Kind.HELD,
        "Meta chose not to deliver: the person's marketing limit across all businesses.",
        "Not a fault: Retry this code once the hold is over; send marketing less often to the same people.",
        retry=True,
    ),
    # Transient: the engine retried them already.
    "1": _TRANSIENT,
    "2": _TRANSIENT,
    "131000": _TRANSIENT,
    "131016": _TRANSIENT,
    "131057": Advice(Kind.TRANSIENT, "The business account is in maintenance mode.", "Retry later.", retry=True),
    "timeout": _NO_ANSWER,
    "connection_lost": _NO_ANSWER,
    "connection_error": Advice(
        Kind.TRANSIENT, "The service could not reach Meta (nothing was sent).", "Retry.", retry=True
    ),
    "no_response": _NO_ANSWER,
    # The person.
    "131050": Advice(
        Kind.OPTED_OUT,
        "The person stopped marketing messages from this business.",
        "Nothing to do: the number is on the suppression list now.",
    ),
    "opted_out": Advice(
        Kind.OPTED_OUT,
        "The number is on the organization's suppression list (never posted).",
        "Nothing to do.",
    ),
    "130472": Advice(
        Kind.RECIPIENT,
        "Meta holds marketing to this number for an experiment.",
        "Nothing to do.",
    ),
    "131026": Advice(
        Kind.RECIPIENT,
        "Undeliverable: no WhatsApp on that number, an old app, or Meta's terms not accepted.",
        "Clean the list; a high share points at a bad source of numbers.",
    ),
    "131047": Advice(
        Kind.RECIPIENT,
        "Re-engagement: more than 24 hours since the person last wrote.",
        "Only an approved template may reach them; nothing to retry.",
    ),
    "marketing_region_blocked": Advice(
        Kind.RECIPIENT,
        "Meta delivers no marketing template to the number's region (never posted).",
        "Nothing to do; send a UTILITY template where one fits.",
    ),
    "frequency_capped": Advice(
        Kind.HELD,
        "The organization's marketing frequency cap is reached for that number (never posted).",
        "Working as set: Retry this code with a not-before when the oldest counted send leaves the window, or "
        "raise the cap.",
        retry=True,
    ),
    # What was sent.
    "100": _INVALID,
    "131008": _INVALID,
    "131009": _INVALID,
    "missing_variables": Advice(
        Kind.REQUEST,
        "The recipient lacks a variable the template needs (never posted).",
        "Send the recipient again with every variable, in a new broadcast.",
    ),
    "132000": _PARAMETERS,
    "132012": _PARAMETERS,
    "132001": Advice(
        Kind.REQUEST,
        "The template does not exist in this name and language on Meta's side.",
        "Run sync_templates for the channel; check the broadcast's language.",
        fix=Fix.TEMPLATE,
    ),
    # Pauses of ours (paused_reason codes).
    "manual": Advice(Kind.PAUSE, "Paused on request.", "Resume when ready."),
    "template_paused": _TEMPLATE_PAUSED,
    "template_disabled": _TEMPLATE_DISABLED,
    "budget_exceeded": Advice(
        Kind.PAUSE,
        "The broadcast reached its max_cost; the rest stays pending.",
        "Resume is not offered: cancel it, or send the rest in a new broadcast with a higher max_cost.",
    ),
}

# By class, for a code the table does not name (a Meta code new to us, an HTTP failure without one).
BY_CLASS: dict[ErrorClass, Advice] = {
    ErrorClass.ACCOUNT: Advice(
        Kind.ACCOUNT,
        "An account-level error: no send can go out until it is fixed.",
        "Read Meta's message, fix the channel's token or account, then Resume.",
        fix=Fix.CHANNEL,
    ),
    ErrorClass.TEMPLATE: _TEMPLATE_PAUSED,
    ErrorClass.TRANSIENT: _TRANSIENT,
    ErrorClass.PERMANENT: Advice(
        Kind.REQUEST,
        "Meta refused this message for good.",
        "Read Meta's message; a Retry posts the same message again and will not help.",
    ),
}
# HTTP failures without a Meta code: `http_<status>`.
HTTP_PREFIX = "http_"
PERMISSION_RANGE = range(200, 300)


def advice_named(code: str) -> Advice | None:
    """The advice written for ``code`` itself (or its range: 200-299, ``http_<status>``), None when only the
    fallback by class applies."""
    if code in ADVICE:
        return ADVICE[code]
    if code.isdecimal() and int(code) in PERMISSION_RANGE:
        return _PERMISSION
    if code.startswith(HTTP_PREFIX) and code[len(HTTP_PREFIX) :].isdecimal():
        status = int(code[len(HTTP_PREFIX) :])
        if status == 429:
            return _THROUGHPUT
        return BY_CLASS[classify(code=None, http_status=status)]
    return None


def advice_for(code: str) -> Advice:
    """What ``code`` means and what to do: its own row, else its class's."""
    named = advice_named(code)
    if named is not None:
        return named
    if code.isdecimal():
        return BY_CLASS[classify(code=code, http_status=None)]
    # A word of ours the table lacks (the test keeps this from happening): say so rather than guess.
    return Advice(Kind.REQUEST, "A code this page has no advice for.", "Read the message of its sends.")

import orjson
import pytest

from whatsapp.errors import ErrorClass, GraphError, classify, parse_graph_error, transport_error

TRANSIENT = [1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057]
PERMANENT = [100, 131008, 131009, 131026, 131047, 131049, 131050, 130472, 132000, 132001, 132012]
ACCOUNT = [0, 190, 10, 200, 250, 299, 368, 131031, 131042, 131048]


def meta_body(code, *, message="(#131026) Message undeliverable", details=None, **extra) -> bytes:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC", **extra}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return orjson.dumps({"error": error})


@pytest.mark.parametrize("code", TRANSIENT)
def test_classify_transient_codes(code):
    # Meta's code decides even when the HTTP status alone would say "permanent".
    assert classify(code=code, http_status=400) is ErrorClass.TRANSIENT
    assert classify(code=str(code), http_status=None) is ErrorClass.TRANSIENT


@pytest.mark.parametrize("code", PERMANENT)
def test_classify_permanent_codes(code):
    assert classify(code=code, http_status=500) is ErrorClass.PERMANENT
    assert classify(code=str(code), http_status=None) is ErrorClass.PERMANENT


@pytest.mark.parametrize("code", ACCOUNT)
def test_classify_account_codes(code):
    assert classify(code=code, http_status=400) is ErrorClass.ACCOUNT
    assert classify(code=str(code), http_status=503) is ErrorClass.ACCOUNT


@pytest.mark.parametrize("code", [199, 300])
def test_classify_just_outside_the_permission_range_falls_back_to_status(code):
    assert classify(code=code, http_status=400) is ErrorClass.PERMANENT
    assert classify(code=code, http_status=500) is ErrorClass.TRANSIENT


@pytest.mark.parametrize(
    ("http_status", "expected"),
    [
        (None, ErrorClass.TRANSIENT),  # connection error or timeout
        (429, ErrorClass.TRANSIENT),
        (500, ErrorClass.TRANSIENT),
        (502, ErrorClass.TRANSIENT),
        (503, ErrorClass.TRANSIENT),
        (400, ErrorClass.PERMANENT),
        (401, ErrorClass.PERMANENT),
        (404, ErrorClass.PERMANENT),
        (413, ErrorClass.PERMANENT),
    ],
)
def test_classify_without_code_uses_http_status(http_status, expected):
    assert classify(code=None, http_status=http_status) is expected


@pytest.mark.parametrize("code", [999999, "131999", "not-a-number", ""])
def test_classify_unknown_code_uses_http_status(code):
    assert classify(code=code, http_status=503) is ErrorClass.TRANSIENT
    assert classify(code=code, http_status=429) is ErrorClass.TRANSIENT
    assert classify(code=code, http_status=400) is ErrorClass.PERMANENT


def test_classify_unknown_meta_code_without_status_is_permanent():
    # e.g. a `failed` status webhook carrying a code this table does not know
    assert classify(code=131999, http_status=None) is ErrorClass.PERMANENT
    # while no code and no status at all is a connection error or timeout
    assert classify(code="not-a-number", http_status=None) is ErrorClass.TRANSIENT


def test_parse_meta_envelope_keeps_code_as_string_and_appends_details():
    # given Meta's envelope whose details add to the message
    body = meta_body(131026, message="(#131026) Message undeliverable", details="Recipient is not on WhatsApp")

    # when
    error = parse_graph_error(400, body)

    # then
    assert error == GraphError(
        code="131026",
        title="Message undeliverable",
        message="(#131026) Message undeliverable: Recipient is not on WhatsApp",
        http_status=400,
        error_class=ErrorClass.PERMANENT,
        fbtrace_id="AbC",
    )
    assert error.retryable is False
    assert error.account_level is False


def test_parse_does_not_repeat_details_already_in_the_message():
    error = parse_graph_error(
        400, meta_body(131026, message="(#131026) Message undeliverable", details="Message undeliverable")
    )

    assert error.message == "(#131026) Message undeliverable"


@pytest.mark.parametrize("body", [meta_body(130429), orjson.loads(meta_body(130429)), meta_body(130429).decode()])
def test_parse_accepts_bytes_dict_and_str(body):
    error = parse_graph_error(400, body)

    assert (error.code, error.error_class, error.retryable) == ("130429", ErrorClass.TRANSIENT, True)


def test_parse_account_level_error():
    error = parse_graph_error(401, meta_body(190, message="Error validating access token"))

    assert (error.code, error.error_class, error.account_level, error.retryable) == (
        "190",
        ErrorClass.ACCOUNT,
        True,
        False,
    )


def test_parse_code_given_as_decimal_string_and_subcode():
    error = parse_graph_error(400, meta_body("131047", error_subcode=2494010, error_user_title="Re-engage"))

    assert (error.code, error.subcode, error.title) == ("131047", "2494010", "Re-engage")
    assert error.error_class is ErrorClass.PERMANENT


@pytest.mark.parametrize(
    ("status", "body", "code", "error_class"),
    [
        (502, b"<html><body>Bad gateway</body></html>", "http_502", ErrorClass.TRANSIENT),
        (500, None, "http_500", ErrorClass.TRANSIENT),
        (429, b"", "http_429", ErrorClass.TRANSIENT),
        (404, b'["not", "an", "object"]', "http_404", ErrorClass.PERMANENT),
        (400, b'{"error": "a string, not an object"}', "http_400", ErrorClass.PERMANENT),
        (403, b'{"error": {"message": "no code here"}}', "http_403", ErrorClass.PERMANENT),
        (None, None, "no_response", ErrorClass.TRANSIENT),
    ],
)
def test_parse_tolerates_bodies_without_meta_code(status, body, code, error_class):
    error = parse_graph_error(status, body)

    assert (error.code, error.error_class, error.http_status) == (code, error_class, status)
    assert error.message  # never empty: it is stored and shown on the send


def test_parse_unknown_meta_code_keeps_the_code_and_classifies_by_status():
    error = parse_graph_error(503, meta_body(987654, message="(#987654) Something new"))

    assert (error.code, error.message, error.error_class) == ("987654", "(#987654) Something new", ErrorClass.TRANSIENT)
    assert error.title == "OAuthException"


def test_transport_error_is_transient():
    error = transport_error(code="timeout", message="No answer within 10 s")

    assert (error.code, error.http_status, error.retryable, error.title) == ("timeout", None, True, "Timeout")

from types import SimpleNamespace

import pytest

from whatsapp.payload import MissingVariablesError, TemplateMessageBuilder, build_template_message, missing_variables


def make_template(*, parameter_format="NAMED", header=(), body=(), name="welcome_v2", language="es"):
    return SimpleNamespace(
        name=name,
        language=language,
        parameter_format=parameter_format,
        header_variables=list(header),
        body_variables=list(body),
    )


def test_named_template_message(template):
    # given the registry's welcome_v2 template (named variables)
    # when
    message = build_template_message(to="+573001112233", template=template, variables={"nombre": "Ana", "monto": "$5"})

    # then it is exactly docs/rules.md
    assert message == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+573001112233",
        "type": "template",
        "template": {
            "name": "welcome_v2",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "nombre", "text": "Ana"},
                        {"type": "text", "parameter_name": "monto", "text": "$5"},
                    ],
                }
            ],
        },
    }


def test_positional_parameters_go_in_numeric_order():
    # given positional variables listed out of order, with a two-digit one
    template = make_template(
        parameter_format="POSITIONAL", body=["2", "10", "1"], name="order_update", language="en_US"
    )

    # when
    message = build_template_message(
        to="+14155550100", template=template, variables={"1": "Ana", "2": "A-1", "10": "x"}
    )

    # then they go by number, without parameter names
    assert message["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": t} for t in ("Ana", "A-1", "x")]}
    ]
    assert message["template"]["language"] == {"code": "en_US"}


def test_header_and_body_parameters():
    template = make_template(header=["empresa"], body=["nombre", "fecha"])

    message = build_template_message(
        to="+573001112233", template=template, variables={"empresa": "Acme", "nombre": "Ana", "fecha": "30/11"}
    )

    assert message["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "text", "parameter_name": "empresa", "text": "Acme"}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "nombre", "text": "Ana"},
                {"type": "text", "parameter_name": "fecha", "text": "30/11"},
            ],
        },
    ]


def test_template_without_variables_sends_no_components():
    template = make_template()

    message = build_template_message(to="+573001112233", template=template, variables=None)

    assert message["template"] == {"name": "welcome_v2", "language": {"code": "es"}}


def test_unused_variables_are_ignored_and_values_become_text():
    template = make_template(body=["nombre", "monto"])

    message = TemplateMessageBuilder(template).build("+573001112233", {"nombre": "Ana", "monto": 12, "extra": "x"})

    assert [p["text"] for p in message["template"]["components"][0]["parameters"]] == ["Ana", "12"]


def test_missing_variables_header_first_none_counts_as_missing():
    template = make_template(header=["empresa"], body=["nombre", "monto"])

    assert missing_variables(template=template, variables={"nombre": "Ana", "monto": None}) == ["empresa", "monto"]
    assert missing_variables(template=template, variables=None) == ["empresa", "nombre", "monto"]
    assert missing_variables(template=template, variables={"empresa": "A", "nombre": "B", "monto": "C"}) == []


def test_build_refuses_a_recipient_lacking_variables():
    builder = TemplateMessageBuilder(make_template(body=["nombre", "monto"]))

    with pytest.raises(MissingVariablesError) as excinfo:
        builder.build("+573001112233", {"nombre": "Ana"})

    assert excinfo.value.missing == ["monto"]
    assert "monto" in str(excinfo.value)


def test_builder_is_reusable_and_messages_are_independent():
    builder = TemplateMessageBuilder(make_template(body=["nombre"]))

    first = builder.build("+573001112233", {"nombre": "Ana"})
    second = builder.build("+573001112234", {"nombre": "Luis"})
    first["template"]["components"][0]["parameters"][0]["text"] = "changed"

    assert second["to"] == "+573001112234"
    assert second["template"]["components"][0]["parameters"][0]["text"] == "Luis"


def test_the_callback_reference_goes_out_as_biz_opaque_callback_data():
    builder = TemplateMessageBuilder(make_template(body=["nombre", "monto"]))
    assert (
        builder.build("+573001112233", {"nombre": "Ana", "monto": "1"}, callback="b1:4")["biz_opaque_callback_data"]
        == "b1:4"
    )
    assert "biz_opaque_callback_data" not in builder.build("+573001112233", {"nombre": "Ana", "monto": "1"})

"""Variables of a template text: its {{...}} placeholders."""

import pytest

from templates_registry.variables import extract_variables, parameter_format_infer, variables_mixed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola {{nombre}}, tu saldo es {{monto}}", ["nombre", "monto"]),
        ("{{monto}} y {{nombre}} y otra vez {{monto}}", ["monto", "nombre"]),
        ("Hola {{1}}, tu saldo es {{2}}", ["1", "2"]),
        ("Saldo {{2}} para {{1}}", ["1", "2"]),
        ("{{10}} {{2}} {{1}}", ["1", "2", "10"]),
        ("Hola {{ nombre }}", ["nombre"]),
        ("Sin variables", []),
        ("", []),
        ("{{}} {{a-b}} {single} {{ok}}", ["ok"]),
    ],
)
def test_extract_variables(text, expected):
    assert extract_variables(text) == expected


def test_parameter_format_is_positional_only_when_every_variable_is_a_number():
    assert parameter_format_infer(["1"], ["1", "2"]) == "POSITIONAL"
    assert parameter_format_infer([], ["nombre"]) == "NAMED"
    assert parameter_format_infer([], []) == "NAMED"


def test_variables_mixed():
    assert variables_mixed(["1"], ["nombre"]) is True
    assert variables_mixed([], ["1", "2"]) is False
    assert variables_mixed([], ["a"]) is False
    assert variables_mixed([], []) is False

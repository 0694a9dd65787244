"""The message templates the sandbox serves until a test sets its own (`POST /_sandbox/templates`)."""

from __future__ import annotations

from typing import Any


def default_templates() -> list[dict[str, Any]]:
    """Default templates, in the shape of `GET /{waba_id}/message_templates`."""
    return [
        {
            "name": "welcome_v2",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hola {{nombre}}, tu saldo es {{monto}}",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "nombre", "example": "Ana"},
                            {"param_name": "monto", "example": "$10.000"},
                        ]
                    },
                }
            ],
            "language": "es",
            "status": "APPROVED",
            "category": "MARKETING",
            "id": "900000000000001",
        },
        {
            "name": "order_update",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "BODY", "text": "Hi {{1}}, order {{2}} shipped", "example": {"body_text": [["Ana", "A-1001"]]}}
            ],
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "900000000000002",
        },
        {
            "name": "payment_reminder",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "HEADER",
                    "format": "TEXT",
                    "text": "Pago a {{empresa}}",
                    "example": {"header_text_named_params": [{"param_name": "empresa", "example": "Acme"}]},
                },
                {
                    "type": "BODY",
                    "text": "Hola {{nombre}}, tu pago vence el {{fecha}}.",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "nombre", "example": "Ana"},
                            {"param_name": "fecha", "example": "30/11"},
                        ]
                    },
                },
                {"type": "FOOTER", "text": "Responde STOP para no recibir más mensajes"},
            ],
            "language": "es",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "900000000000003",
        },
    ]

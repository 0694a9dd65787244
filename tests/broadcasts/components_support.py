"""Templates with media headers, dynamic buttons and one-time codes, in Meta's GET message_templates shape."""

from typing import Any

IMAGE_TEMPLATE: dict[str, Any] = {
    "name": "promo_image",
    "language": "es",
    "status": "APPROVED",
    "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://scontent.example/h.png"]}},
        {"type": "BODY", "text": "Hola {{1}}, mira la oferta", "example": {"body_text": [["Ana"]]}},
        {"type": "FOOTER", "text": "Responde STOP para no recibir más mensajes"},
    ],
}

DOCUMENT_TEMPLATE: dict[str, Any] = {
    "name": "invoice_pdf",
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "DOCUMENT"},
        {"type": "BODY", "text": "Your invoice {{1}} is attached"},
    ],
}

URL_TEMPLATE: dict[str, Any] = {
    "name": "order_tracking",
    "language": "en_US",
    "status": "APPROVED",
    "category": "UTILITY",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, your order shipped", "example": {"body_text": [["Ana"]]}},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Stop updates"},
                {
                    "type": "URL",
                    "text": "Track",
                    "url": "https://shop.example/track/{{1}}",
                    "example": ["https://shop.example/track/A-1"],
                },
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"},
            ],
        },
    ],
}

COUPON_TEMPLATE: dict[str, Any] = {
    "name": "coupon_offer",
    "language": "es",
    "status": "APPROVED",
    "category": "MARKETING",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "BODY", "text": "Tu cupón te espera"},
        {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "DESC15"}]},
    ],
}

# Meta creates the OTP button as {"type": "OTP", "otp_type": "COPY_CODE"} and shows it as URL afterwards.
AUTH_TEMPLATE: dict[str, Any] = {
    "name": "login_code",
    "language": "en_US",
    "status": "APPROVED",
    "category": "AUTHENTICATION",
    "parameter_format": "POSITIONAL",
    "components": [
        {
            "type": "BODY",
            "text": "*{{1}}* is your verification code. For your security, do not share this code.",
            "add_security_recommendation": True,
        },
        {"type": "FOOTER", "text": "This code expires in 10 minutes.", "code_expiration_minutes": 10},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Copy code",
                    "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code_expiration_minutes=10&code=otp{{1}}",
                }
            ],
        },
    ],
}

ALL = (IMAGE_TEMPLATE, DOCUMENT_TEMPLATE, URL_TEMPLATE, COUPON_TEMPLATE, AUTH_TEMPLATE)


def register(channel, item: dict[str, Any]):
    """The template in our registry, as sync_templates writes it."""
    from templates_registry.services import template_upsert

    template, _ = template_upsert(
        waba_id=channel.waba_id,
        name=item["name"],
        language=item["language"],
        components=item["components"],
        status=item["status"],
        category=item["category"],
        parameter_format=item["parameter_format"],
    )
    return template

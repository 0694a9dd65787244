"""Local WhatsApp Graph API sandbox: `python -m whatsapp.sandbox --port 8099` (see docs/sandbox.md).

Importing this package must stay cheap and free of Django: the sandbox runs without settings.
"""

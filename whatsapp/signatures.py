"""Meta's signature of a webhook request: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>``.

Pure: checked on the raw bytes, before anything is parsed (the view in ``broadcasts/api/meta_webhooks.py``).
"""

import hashlib
import hmac


def signature_valid(*, body: bytes, header: str, secret: str) -> bool:
    """``sha256=<hex HMAC-SHA256(body, app secret)>``, compared in constant time."""
    if not secret or not header.startswith("sha256="):
        return False
    given = header.removeprefix("sha256=").strip().lower()
    # compare_digest refuses non-ASCII str (TypeError): such a header is simply a wrong signature.
    if not given.isascii():
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())

"""Reads a WhatsApp Business account's message templates from the Graph API (``sync_templates``).

GET {graph_url}/{waba_id}/message_templates, following ``paging.next`` until the last page.
Pure Meta knowledge: the caller passes the Graph API's base URL, and a failure is a ``GraphTemplatesError``
(``templates_registry.services`` turns it into the API's ``ApplicationError``).
"""

from typing import Any
from urllib.parse import urlsplit

import requests

# Connect fast, but give Meta time to render a page of 100 templates with their components.
TIMEOUT = (5, 30)
PAGE_SIZE = 100
# A WABA holds at most a few thousand templates: 200 pages of 100 is far past any real account,
# and stops a server whose `paging.next` never ends.
MAX_PAGES = 200
FIELDS = "id,name,language,status,category,parameter_format,components"


class GraphTemplatesError(Exception):
    """The Graph API could not be read or answered with an error."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


def message_templates_fetch(
    *, waba_id: str, access_token: str, graph_url: str, session: requests.Session | None = None
) -> list[dict[str, Any]]:
    """Every template of the account, in Meta's shape (``id, name, language, status, category, components``)."""
    base = graph_url.rstrip("/")
    origin = _origin(base)
    http = session or requests.Session()
    url: str | None = f"{base}/{waba_id}/message_templates"
    params: dict[str, Any] | None = {"fields": FIELDS, "limit": PAGE_SIZE}
    templates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        if url is None:
            return templates
        seen.add(url)
        page = _get_page(http, url, params=params, access_token=access_token)
        data = page.get("data")
        if not isinstance(data, list):
            raise GraphTemplatesError("The Graph API answered without a 'data' list of templates.")
        templates.extend(item for item in data if isinstance(item, dict))
        next_url = (page.get("paging") or {}).get("next") if isinstance(page.get("paging"), dict) else None
        if next_url and _origin(next_url) != origin:
            # The channel's access token goes only to the configured Graph API host.
            raise GraphTemplatesError(f"Refusing to follow paging.next to another host: {_origin(next_url)}.")
        url = next_url if next_url and next_url not in seen else None
        params = None  # paging.next already carries the query (fields, limit, cursor)
    raise GraphTemplatesError(f"More than {MAX_PAGES} pages of templates; stopped.")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _get_page(http: requests.Session, url: str, *, params: dict | None, access_token: str) -> dict[str, Any]:
    try:
        response = http.get(url, params=params, headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise GraphTemplatesError(f"The Graph API could not be reached: {exc.__class__.__name__}.") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        message = error.get("message") or response.reason or "error"
        raise GraphTemplatesError(
            f"The Graph API answered HTTP {response.status_code}: {message}",
            details={"status": response.status_code, "code": str(error.get("code", ""))},
        )
    if not isinstance(body, dict):
        raise GraphTemplatesError("The Graph API answered with something other than a JSON object.")
    return body

"""A OneRoster 1.2 REST client: OAuth 2 client credentials, paginated reads of users, classes and enrollments.

It knows HTTP and the specification's JSON only; `accounts.roster` turns what it reads into the same
rows as a CSV bundle and imports them through the same service.
"""

import logging
import re
import time
from urllib.parse import urljoin

import requests

logger = logging.getLogger(__name__)

ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"
# The collections read, each with the key its JSON response holds the records under.
COLLECTIONS = {"users": "users", "classes": "classes", "enrollments": "enrollments"}
LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class OneRosterError(Exception):
    """The endpoint could not be read: refused credentials, an HTTP error, or an answer that is not OneRoster."""


class OneRosterClient:
    """Reads the rostering collections of one OneRoster 1.2 service provider."""

    def __init__(self, *, base_url, token_url, client_id, client_secret, scope="", page_size=100, timeout=30,
                 session=None):
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self.page_size = page_size
        self.timeout = timeout
        self.session = session or requests.Session()
        self._token, self._token_expires = None, 0.0

    def token(self, *, renew=False):
        """An access token from the token endpoint (client credentials, HTTP basic authentication), kept until it expires."""
        if self._token and not renew and time.monotonic() < self._token_expires:
            return self._token
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        try:
            response = self.session.post(self.token_url, data=data, auth=(self.client_id, self.client_secret),
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise OneRosterError(f"token endpoint {self.token_url}: {exc}") from exc
        if response.status_code != 200:
            raise OneRosterError(f"token endpoint {self.token_url} answered {response.status_code}: "
                                 f"{response.text[:200]}")
        try:
            payload = response.json()
            self._token = payload["access_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise OneRosterError(f"token endpoint {self.token_url} sent no access_token") from exc
        try:
            expires_in = float(payload.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        self._token_expires = time.monotonic() + max(expires_in - 30, 0)
        return self._token

    def collection(self, name):
        """Every record of a rostering collection (`users`, `classes`, `enrollments`), page after page.

        Pages with `limit` and `offset`; stops at the `X-Total-Count` the provider reports, or when
        a page comes back short; follows a `Link: <...>; rel="next"` header when the provider sends one.
        """
        key = COLLECTIONS[name]
        url = f"{self.base_url}{ROSTERING_PATH}/{name}"
        params = {"limit": self.page_size, "offset": 0}
        records = []
        while url:
            response = self._get(url, params)
            try:
                page = response.json()[key]
            except (ValueError, KeyError, TypeError) as exc:
                raise OneRosterError(f"{url}: the answer has no '{key}' list") from exc
            if not isinstance(page, list):
                raise OneRosterError(f"{url}: '{key}' is not a list")
            records += page
            if not page:
                break
            link = LINK_NEXT.search(response.headers.get("Link", ""))
            total = response.headers.get("X-Total-Count", "")
            if total.isdigit() and len(records) >= int(total):
                break
            if link:
                url, params = urljoin(url, link.group(1)), None
            elif total.isdigit() or len(page) >= self.page_size:
                params = {"limit": self.page_size, "offset": len(records)}
            else:
                break
        logger.info("oneroster: %d %s read", len(records), name)
        return records

    def _get(self, url, params):
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token(renew=attempt == 2)}", "Accept": "application/json"}
            try:
                response = self.session.get(url, params=params, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                raise OneRosterError(f"{url}: {exc}") from exc
            if response.status_code != 401:
                break  # a 401 once means an expired token: ask for a new one and try again
        if response.status_code != 200:
            raise OneRosterError(f"{url} answered {response.status_code}: {response.text[:200]}")
        return response

    def read(self):
        """{"users": [...], "classes": [...], "enrollments": [...]}: the specification's JSON records."""
        return {name: self.collection(name) for name in COLLECTIONS}

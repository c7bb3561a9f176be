"""The test OP's people (OP_PEOPLE_FILE: {username: {password, sub, email, email_verified, given_name,
family_name, locale, groups}}) and its switches (OP_MODE_FILE: "", "wrong-audience" or "expired")."""

import json
import os
import time
from pathlib import Path

from oidc_provider.lib.claims import ScopeClaims


def person(user):
    return json.loads(Path(os.environ["OP_PEOPLE_FILE"]).read_text())[user.username]


def sub(user):
    return person(user)["sub"]


def userinfo(claims, user):
    found = person(user)
    for name in ("email", "email_verified", "given_name", "family_name", "locale"):
        if name in found:
            claims[name] = found[name]
    return claims


class GroupsScope(ScopeClaims):
    info_groups = ("Groups", "The person's affiliations.")

    def scope_groups(self):
        return {"groups": person(self.user).get("groups", [])}


def id_token_hook(id_token, user, token, request, **kwargs):
    mode = Path(os.environ["OP_MODE_FILE"]).read_text().strip()
    if mode == "wrong-audience":
        id_token["aud"] = "another-application"
    elif mode == "expired":
        id_token["iat"] = int(time.time()) - 3600
        id_token["exp"] = int(time.time()) - 1800
    id_token["groups"] = person(user).get("groups", [])
    return id_token

"""Prepares the test OP's database: tables, a signing key, FlashNotify as a client, the people.

    python -m tests.oidc_op.bootstrap <client_id> <client_secret> <redirect_uri> <post_logout_uri>
"""

import json
import os
import sys
from pathlib import Path

import django
from django.core.management import call_command


def main(client_id, client_secret, redirect_uri, post_logout_uri):
    django.setup()
    from django.contrib.auth.models import User
    from oidc_provider.models import Client, ResponseType

    call_command("migrate", verbosity=0)
    call_command("creatersakey")
    client = Client.objects.create(
        name="FlashNotify", client_type="confidential", client_id=client_id, client_secret=client_secret,
        jwt_alg="RS256", require_consent=False, _redirect_uris=redirect_uri,
        _post_logout_redirect_uris=post_logout_uri, _scope="openid email profile groups")
    client.response_types.set([ResponseType.objects.get(value="code")])
    for username, found in json.loads(Path(os.environ["OP_PEOPLE_FILE"]).read_text()).items():
        User.objects.create_user(username, password=found["password"])


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Schemathesis hook for the fuzz test (tests/it/fuzz.rs): authenticates as the admin of
the `gatehouse dev` server under test with the password grant.

A static token would not do: the fuzzer, as an admin, may retire the signing key that
signed its own token (it learns key ids from `POST /api/v1/signing-keys` responses), which
rightly refuses that token from then on. On a 401 schemathesis drops the cached token and
calls `get` again, so the run goes on with a token signed by the current key.

Reads GATEHOUSE_FUZZ_URL and GATEHOUSE_FUZZ_ADMIN_PASSWORD from the environment.
"""

import json
import os
import urllib.parse
import urllib.request

import schemathesis


@schemathesis.auth(refresh_interval=600, retry_on=[401])
class AdminToken:
    def get(self, case, context):
        form = urllib.parse.urlencode(
            {
                "grant_type": "password",
                "username": "admin",
                "password": os.environ["GATEHOUSE_FUZZ_ADMIN_PASSWORD"],
            }
        ).encode()
        request = urllib.request.Request(
            os.environ["GATEHOUSE_FUZZ_URL"] + "/oauth/token",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

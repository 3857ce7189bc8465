"""Schemathesis hook for the fuzz test (tests/it/fuzz.rs): authenticates as the admin of
the `gatehouse dev` server under test with the password grant.

A static token would not do: the fuzzer, as an admin, may retire the signing key that
signed its own token (it learns key ids from `POST /api/v1/signing-keys` responses), which
rightly refuses that token from then on. On a 401 schemathesis drops the cached token and
calls `get` again, so the run goes on with a token signed by the current key.

The hook logs in from another loopback address (127.0.0.2) than the fuzzer's requests
(127.0.0.1): the fuzzer, as the admin, sends wrong current passwords to
`POST /api/v1/current-user/password`, which count as failed logins per address and user
name, so a login from the fuzzer's own address would rightly be refused (429) after a few
of them. An admin elsewhere is not locked out by a guesser at one address, and neither is
this hook.

Reads GATEHOUSE_FUZZ_URL and GATEHOUSE_FUZZ_ADMIN_PASSWORD from the environment.
"""

import http.client
import json
import os
import urllib.parse

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
        )
        url = urllib.parse.urlsplit(os.environ["GATEHOUSE_FUZZ_URL"])
        connection = http.client.HTTPConnection(
            url.hostname, url.port, timeout=10, source_address=("127.0.0.2", 0)
        )
        try:
            connection.request(
                "POST",
                "/oauth/token",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"admin login answered {response.status}: {body[:200]!r}")
            return json.loads(body)["access_token"]
        finally:
            connection.close()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

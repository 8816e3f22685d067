"""schemathesis hooks for scripts/schemathesis: a bearer token that stays valid.

The run calls `POST /auth/logout-all` with the token it is given, which revokes every access
token of the user (README, "Revocation"); a token fixed on the command line would make every
later authenticated case a 401. So the token is fetched by logging in again at most once a
second (one argon2 pass each, ~0.1 s) with the credentials scripts/lib/schemathesis_run.py
registered and put into the environment.
"""

import json
import os
import urllib.request

import schemathesis


@schemathesis.auth(refresh_interval=1)
class FreshToken:
    def get(self, case, context):
        body = json.dumps({"username": os.environ["ST_USERNAME"],
                           "password": os.environ["ST_PASSWORD"]}).encode()
        request = urllib.request.Request(f"{os.environ['ST_BASE_URL']}/auth/login", data=body,
                                         method="POST", headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

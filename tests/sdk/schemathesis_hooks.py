"""Loaded by `schemathesis run` (SCHEMATHESIS_HOOKS=schemathesis_hooks): every request is signed
with the access key of the server under test (SWITCHBOARD_CONNECTION_STRING)."""

import os

import schemathesis

from hmac_signing import HmacAuth

schemathesis.auth.set_from_requests(HmacAuth(os.environ["SWITCHBOARD_CONNECTION_STRING"]))

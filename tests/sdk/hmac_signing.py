"""ACS HMAC-SHA256 request signing as a `requests` auth, the scheme of src/auth/hmac.rs.

String to sign: `VERB\\n<path and query as sent>\\n<x-ms-date>;<host>;<x-ms-content-sha256>`, keyed
with the base64-decoded access key; sent as
`Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<base64>`.
It signs the prepared request, so the hash covers the exact bytes that go on the wire.
"""

import base64
import email.utils
import hashlib
import hmac
import urllib.parse

import requests


class HmacAuth(requests.auth.AuthBase):
    def __init__(self, connection_string: str):
        parts = dict(p.split("=", 1) for p in connection_string.strip().split(";") if p)
        self.key = base64.b64decode(parts["accesskey"])

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        date = email.utils.formatdate(usegmt=True)
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        host = urllib.parse.urlsplit(request.url).netloc
        string_to_sign = f"{request.method.upper()}\n{request.path_url}\n{date};{host};{content_hash}"
        signature = base64.b64encode(hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
        request.headers["x-ms-date"] = date
        request.headers["x-ms-content-sha256"] = content_hash
        request.headers["Authorization"] = (
            f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"
        )
        return request

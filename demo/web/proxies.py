"""Whose `X-Forwarded-For` is believed: the proxies in front of the app, and nobody else.

uvicorn (which Gradio 6.31 runs) rewrites each request's client from `X-Forwarded-For` when the
connection comes from one of `FORWARDED_ALLOW_IPS`, taking the last address that is not a
trusted proxy (uvicorn/middleware/proxy_headers.py); unset, that is 127.0.0.1 and ::1, so any
local program, and `--share`'s tunnel, could name itself any client. Here nobody is trusted
unless named: `--trusted-proxies`, or on a Hugging Face Space the network its proxy connects from.

On a Space: Gradio knows it runs on one from `SYSTEM=spaces` and `SPACE_ID` (gradio/utils.py
`get_space`; hub-docs `spaces-overview.md`, "Built-in environment variables": `SPACE_ID`,
`SPACE_HOST`). What a Space sees of a visitor's address is documented nowhere: neither hub-docs
(huggingface/hub-docs, commit 242f4a1, docs/hub/spaces-*.md) nor the `spaces` package (0.51.3,
which never reads an address: ZeroGPU tells visitors apart by the `X-IP-Token` JWT the Hub adds,
`spaces/zero/client.py` TOKEN_HEADER, and falls back to "IP-based quotas" without one) names a
header or the proxy's addresses. Space authors report that `request.client.host` is an internal
address (10.16.3.80 in embeddings-benchmark/mteb#4754, 2026-05-28) and the visitor's address is in
`X-Forwarded-For`. So on a Space the private networks are trusted as its proxy: a connection can
only come from them through Hugging Face's own network, and uvicorn then takes the last public
address of `X-Forwarded-For`, the one the proxy saw. If that proxy ever connects from elsewhere,
the guard's warning (`guard.Guard._asking`) names its address.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

#: RFC 1918 and IPv6 unique-local networks: where a Space's proxy connects from (see above).
SPACES_PROXIES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


def on_a_space(environ: Mapping[str, str] | None = None) -> bool:
    """Gradio's own test (gradio/utils.py `get_space`): `SYSTEM=spaces` and a `SPACE_ID`."""
    environ = os.environ if environ is None else environ
    return environ.get("SYSTEM") == "spaces" and bool(environ.get("SPACE_ID"))


def default_trusted(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The proxies trusted when none are named: a Space's private networks, else none."""
    return SPACES_PROXIES if on_a_space(environ) else ()


def parse(text: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks, checked (ValueError names the bad one); '*' is refused."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items or "*" in items:
        raise ValueError("name the proxies' addresses or networks ('*' would believe any client's X-Forwarded-For)")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return items


def for_uvicorn(trusted: tuple[str, ...]) -> str:
    """The `FORWARDED_ALLOW_IPS` value for `trusted` (empty: uvicorn then trusts no connection)."""
    return ",".join(trusted)

"""Where a generation endpoint is: inside the cluster, or somewhere a private corpus must not go.

``--engine openai`` sends every passage to an HTTP server. Private corpora do not leave the
cluster, so the server's host must be one of:

- a loopback, private (RFC 1918; IPv6 unique local, ``fc00::/7``), link-local or unspecified
  ("this host") address, IPv4 or IPv6, also written as an IPv4-mapped IPv6 address;
- ``localhost`` or a name under it, or a cluster-internal name: ``*.svc``, ``*.cluster.local``
  (Kubernetes services), ``*.internal`` (cloud VPC names, the TLD reserved for private use),
  ``*.local`` (mDNS, one link). No public name can end so; these are accepted without a lookup,
  since a planning machine outside the cluster may not resolve them;
- any other name that resolves, where the job is planned, only to such addresses.

Everything else (a public address, a name that resolves to any public address or to nothing) is
refused unless the user opts in (``--allow-external-endpoint``). The check is on the URL the
user gave; the request client follows no redirects and ignores proxy variables, so requests go
to that host and nowhere else.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bonito_ray.errors import UserError

PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "0.0.0.0/32",
    "::1/128", "fc00::/7", "fe80::/10", "::/128",
))
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localhost")

Resolver = Callable[[str], Iterable[str]]


class EndpointURLError(UserError, ValueError):
    """An endpoint URL that cannot be used as given."""


@dataclass(frozen=True)
class Scope:
    """Whether a host is inside the cluster (``private``), and why, in words for an error message."""

    private: bool
    why: str


def resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to here (none when it does not resolve)."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except (socket.gaierror, UnicodeError):
        return []


def is_private_address(address: str) -> bool:
    """Whether an IP address (v4 or v6; IPv4-mapped v6 by its v4 form) is inside PRIVATE_NETWORKS."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the zone names a link, not a host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in PRIVATE_NETWORKS if network.version == ip.version)


def host_scope(host: str, resolver: Resolver = resolve) -> Scope:
    """Whether ``host`` (an address or a name, as in a URL) is inside the cluster; see the module doc."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if is_private_address(name):
            return Scope(True, f"{name} is a loopback, private or link-local address")
        return Scope(False, f"{name} is a public address")
    if name == "localhost" or name.endswith(INTERNAL_SUFFIXES):
        return Scope(True, f"{name} is a cluster-internal name")
    addresses = list(resolver(name))
    if not addresses:
        return Scope(False, f"{name} does not resolve here")
    public = [a for a in addresses if not is_private_address(a)]
    if public:
        return Scope(False, f"{name} resolves to public address {public[0]}")
    return Scope(True, f"{name} resolves only to private addresses ({', '.join(addresses)})")


def endpoint_host(url: str) -> str:
    """The host of an endpoint base URL (``http(s)://host[:port][/path]``); refuses anything else.

    No credentials, query or fragment: a key belongs in the environment (it would otherwise be
    written to the manifest and logs), and the paths of the API are added to the URL as it is.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointURLError(f"endpoint must be an http:// or https:// base URL such as "
                               f"http://10.0.0.5:8000/v1, got {_shown(url)}")
    if "@" in parts.netloc:
        raise EndpointURLError(f"endpoint {_shown(url)} has credentials in it; give the API key through the "
                               "environment variable named by api_key_env instead")
    if parts.query or parts.fragment:
        raise EndpointURLError(f"endpoint {_shown(url)} has a query or fragment; give the base URL only, "
                               "e.g. http://10.0.0.5:8000/v1")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise EndpointURLError(f"endpoint {_shown(url)} has an invalid port") from None
    if not parts.hostname:
        raise EndpointURLError(f"endpoint {_shown(url)} names no host")
    return parts.hostname


def _shown(url: str) -> str:
    """The URL, quoted, without what could be a secret: anything before ``@``, the query and the fragment."""
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    shown = scheme + sep + authority + slash + path
    if "?" in shown or "#" in shown:
        shown = re.split(r"[?#]", shown, maxsplit=1)[0] + "?..."
    return repr(shown)

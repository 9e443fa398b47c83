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
refused unless the user opts in (``--allow-external-endpoint``). A cloud metadata service
(169.254.169.254 and its kin, ``metadata.google.internal``, a name that resolves to one) is
refused always: the key would go to it, and its answers (credentials) into error messages.

The host checked is the one the HTTP client will connect to: the URL is parsed by ``requests``'
own preparation, and a URL with characters outside RFC 3986 (``http://8.8.8.8\\.svc/`` is
8.8.8.8 to ``requests``, a ``.svc`` name to ``urlsplit``) is refused. The client follows no
redirects and ignores proxy variables, so requests go to that host and nowhere else
(``bonito_ray.engines.http_client``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bonito_ray.errors import UserError

PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "0.0.0.0/32",
    "::1/128", "fc00::/7", "fe80::/10", "::/128",
))
INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localhost")
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack instance metadata
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "169.254.170.2",  # AWS ECS task credentials
    "169.254.170.23", "fd00:ec2::23",  # EKS Pod Identity credentials
    "100.100.100.200",  # Alibaba Cloud instance metadata
))
METADATA_NAMES = frozenset(("metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"))
RESOLVE_TIMEOUT_S = 10.0
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")  # RFC 3986's, and no others
HOST_NAME = re.compile(r"[a-z0-9_.-]+|\[[0-9a-f:.]+(%[A-Za-z0-9._~-]+)?\]")  # a name, or an IPv6 literal (and zone)

Resolver = Callable[[str], Iterable[str]]


class EndpointURLError(UserError, ValueError):
    """An endpoint URL that cannot be used as given."""


@dataclass(frozen=True)
class Scope:
    """Whether a host is inside the cluster (``private``), and why, in words for an error message."""

    private: bool
    why: str
    metadata: bool = False  # a cloud metadata service: refused even with --allow-external-endpoint


def resolve(host: str, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[str]:
    """The addresses ``host`` resolves to here (none when it does not resolve within ``timeout_s``)."""
    found: list[str] = []

    def lookup() -> None:
        try:
            found.extend(sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}))
        except (socket.gaierror, UnicodeError):
            pass

    # getaddrinfo has no timeout of its own; a lookup still going on at the deadline is left to end alone.
    thread = threading.Thread(target=lookup, name="resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return list(found) if not thread.is_alive() else []


def _address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address; IPv4-mapped v6 as its v4 form, without a v6 zone (``%eth0`` names a link, not a host)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def is_metadata_address(address: str) -> bool:
    """Whether an IP address is a cloud metadata service's (METADATA_ADDRESSES)."""
    return _address(address) in METADATA_ADDRESSES


def is_private_address(address: str) -> bool:
    """Whether an IP address (v4 or v6; IPv4-mapped v6 by its v4 form) is inside PRIVATE_NETWORKS."""
    ip = _address(address)
    return any(ip in network for network in PRIVATE_NETWORKS if network.version == ip.version)


def host_scope(host: str, resolver: Resolver = resolve) -> Scope:
    """Whether ``host`` (an address or a name, as in a URL) is inside the cluster; see the module doc."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if is_metadata_address(name):
            return Scope(False, f"{name} is a cloud metadata service", metadata=True)
        if is_private_address(name):
            return Scope(True, f"{name} is a loopback, private or link-local address")
        return Scope(False, f"{name} is a public address")
    if name in METADATA_NAMES:
        return Scope(False, f"{name} is a cloud metadata service", metadata=True)
    if name == "localhost" or name.endswith(INTERNAL_SUFFIXES):
        return Scope(True, f"{name} is a cluster-internal name")
    addresses = list(resolver(name))
    if not addresses:
        return Scope(False, f"{name} does not resolve here")
    metadata = [a for a in addresses if is_metadata_address(a)]
    if metadata:
        return Scope(False, f"{name} resolves to {metadata[0]}, a cloud metadata service", metadata=True)
    public = [a for a in addresses if not is_private_address(a)]
    if public:
        return Scope(False, f"{name} resolves to public address {public[0]}")
    return Scope(True, f"{name} resolves only to private addresses ({', '.join(addresses)})")


def endpoint_host(url: str) -> str:
    """The host of an endpoint base URL (``http(s)://host[:port][/path]``); refuses anything else.

    No credentials, query or fragment: a key belongs in the environment (it would otherwise be
    written to the manifest and logs), and the paths of the API are added to the URL as it is.
    The host is the one ``requests`` connects to (see the module doc).
    """
    unusual = URL_CHARACTERS.match(url).end()
    if unusual < len(url):
        raise EndpointURLError(f"endpoint {_shown(url)} has {url[unusual]!r} in it, not a URL character "
                               "(RFC 3986); write the URL plainly, e.g. http://10.0.0.5:8000/v1 (a name in "
                               "its ASCII form, xn--...)")
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
    host = client_host(url)
    if not host or not HOST_NAME.fullmatch(host):
        raise EndpointURLError(f"endpoint {_shown(url)} names no usable host (the HTTP client reads {host!r})")
    return host


def client_host(url: str) -> str | None:
    """The host ``requests`` connects to for ``url``: its own preparation of the URL, read by urllib3's parser."""
    import requests
    from urllib3.util import parse_url

    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        return parse_url(prepared.url).host
    except (requests.RequestException, ValueError):
        return None


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

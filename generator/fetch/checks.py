"""Whether an image URL may be fetched, and at which addresses (reliability.md F-1, F-2).

`parse_mirror_url` applies the URL rules with no lookup and no socket; `resolve` looks
the host up once and refuses it if any address is not public. The download connects
only to the addresses `resolve` returned, so nothing looks the name up a second time.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings

from generator.fetch.errors import PermanentMirrorError, TransientMirrorError

# Reliability F-1: no URL a CDN hands out is longer; longer ones are probing something.
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower-case, no trailing dot, IPv6 without brackets
    port: int
    explicit_port: bool
    request_target: str  # path and query, percent-encoded
    trusted: bool = False  # on the configured provider's own origin

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host


_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
# WHATWG URL: a host whose last label is a number is parsed as IPv4, in every base
# browsers and inet_aton accept (2130706433, 0x7f.1, 0177.0.0.1, 0).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# Ranges `is_global` lets through or that tunnel to IPv4 space (requests-hardened's list).
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2001::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
    )
)


def check_mirror_url(url: str) -> None:
    """Raise PermanentMirrorError unless `url` may be fetched; no DNS lookup, no socket.

    The rules are reliability.md F-1. IP-literal hosts pass only when the literal itself
    is in MIRROR_ALLOWED_HOSTS and MIRROR_ALLOW_PRIVATE_ADDRESSES is on (local tests).
    Messages name the reason and the host, never the rest of the URL, whose query may
    hold a signature.
    """
    parse_mirror_url(url)


def _provider_origin() -> tuple[str, str, int] | None:
    parts = urlsplit(settings.AIMLAPI_BASE_URL)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port


def _is_provider_origin(url: str) -> bool:
    """Whether `url` is on the exact origin (scheme, host, port) of AIMLAPI_BASE_URL.

    The studio already sends its key there, so images served by the configured provider
    itself are trusted like it, even on a private address: that is what makes a local
    AI/ML-API-compatible server work by setting only AIMLAPI_BASE_URL and AIMLAPI_KEY.
    Every other host still goes through the allowlist and the address checks.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return False
    if "@" in parts.netloc or not parts.hostname:
        return False
    return (scheme, parts.hostname.lower().rstrip("."), port) == _provider_origin()


def parse_mirror_url(url: str) -> Target:
    trusted = isinstance(url, str) and _is_provider_origin(url)
    allow_private = trusted or bool(settings.MIRROR_ALLOW_PRIVATE_ADDRESSES)
    if not isinstance(url, str) or not url:
        raise PermanentMirrorError("The image URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise PermanentMirrorError(f"The image URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines, and a backslash is a path separator
    # to browsers but not to Python: parsers disagree on such URLs, so none pass.
    if any(_forbidden_url_char(ch) for ch in url):
        raise PermanentMirrorError(
            "The image URL contains whitespace, control characters or backslashes"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # bad brackets, or a netloc that NFKC turns into another one
        raise PermanentMirrorError("The image URL is malformed") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed_schemes:
        shown = re.sub(r"[^a-z0-9+.-]", "", scheme)[:20]
        raise PermanentMirrorError(f"The image URL scheme {shown!r} is not allowed (https only)")
    if not url[len(parts.scheme) :].startswith("://"):
        raise PermanentMirrorError("The image URL is not an absolute URL")
    netloc = parts.netloc
    if "@" in netloc:
        raise PermanentMirrorError("The image URL carries credentials (user info)")
    host, port_text, bracketed = _split_host_port(netloc)

    default_port = 443 if scheme == "https" else 80
    port = default_port
    if port_text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
            raise PermanentMirrorError("The image URL has a malformed port")
        port = int(port_text)
        if port != default_port and not allow_private:
            raise PermanentMirrorError(f"The image URL port {port} is not allowed")

    allowed = [entry.strip().lower().rstrip(".") for entry in settings.MIRROR_ALLOWED_HOSTS]
    if trusted:
        allowed.append(_provider_origin()[1])
    literal = _ip_literal(host, bracketed)
    if literal is not None:
        allowed_literals = {_normalize_literal(entry) for entry in allowed}
        if not allow_private or str(literal) not in allowed_literals:
            raise PermanentMirrorError(
                f"The image URL names an IP address ({host}) instead of an allowed host"
            )
        host = str(literal)
    elif not _host_allowed(host, allowed):
        raise PermanentMirrorError(f"The image host {host} is not in MIRROR_ALLOWED_HOSTS")

    request_target = parts.path or "/"
    if parts.query:
        request_target += f"?{parts.query}"
    # Keep existing escapes and reserved characters; encode the rest (non-ASCII paths).
    request_target = quote(request_target, safe="/:@!$&'()*+,;=?%~-._")
    return Target(scheme, host, port, port != default_port, request_target, trusted)


def _forbidden_url_char(ch: str) -> bool:
    code = ord(ch)
    if code <= 0x20 or code == 0x7F or ch == "\\":
        return True
    return code >= 0x80 and (ch.isspace() or not ch.isprintable())


def _split_host_port(netloc: str) -> tuple[str, str | None, bool]:
    """(host, port text or None, host was in brackets); raises on a malformed authority."""
    if netloc.startswith("["):
        end = netloc.find("]")
        rest = netloc[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            raise PermanentMirrorError("The image URL has a malformed host")
        return netloc[1:end].lower(), (rest[1:] if rest else None), True
    host, colon, port_text = netloc.rpartition(":")
    if not colon:
        host, port_text = netloc, ""
    host = host.lower()
    if host.endswith("."):  # the root label: "cdn.aimlapi.com." is the same host
        host = host[:-1]
    if not host:
        raise PermanentMirrorError("The image URL has no host")
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise PermanentMirrorError("The image URL has a malformed host")
    return host, (port_text if colon else None), False


def _ip_literal(host: str, bracketed: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if bracketed:
        if "%" in host:  # a zone id names an interface, never a CDN
            raise PermanentMirrorError("The image URL has a malformed host")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise PermanentMirrorError("The image URL has a malformed host") from None
    if not _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return None
    try:
        # Only the canonical dotted quad; "0x7f.1" and "2130706433" reach the same
        # address through inet_aton but can never match an allowlist entry.
        return ipaddress.IPv4Address(host)
    except ValueError:
        raise PermanentMirrorError(
            f"The image URL names an IP address ({host}) instead of an allowed host"
        ) from None


def _normalize_literal(entry: str) -> str | None:
    try:
        return str(ipaddress.ip_address(entry.strip("[]")))
    except ValueError:
        return None


def _host_allowed(host: str, allowed: list[str]) -> bool:
    # Django's ALLOWED_HOSTS convention: ".fal.media" admits fal.media and its
    # subdomains, always on a label boundary (the dot is part of the suffix).
    for entry in allowed:
        if not entry:
            continue
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(
        address in network for network in _BLOCKED_NETWORKS if network.version == address.version
    ):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def _is_private_or_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_private or address.is_loopback


def resolve(target: Target, allow_private: bool) -> list[str]:
    """The host's addresses, each checked; the caller connects only to these (F-2)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TransientMirrorError(f"Could not resolve the image host {target.host}") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TransientMirrorError(f"The image host {target.host} has no addresses")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise PermanentMirrorError(
                f"The image host {target.host} resolves to an unusable address"
            ) from None
        # Any bad address rejects the host, stricter than dropping it (Discourse does):
        # a CDN name never legitimately points inside our network.
        if not allow_private and not _is_public(ip):
            raise PermanentMirrorError(
                f"The image host {target.host} resolves to a non-public address ({ip})"
            )
        if target.scheme == "http" and not _is_private_or_loopback(ip):
            raise PermanentMirrorError("Plain http is allowed only to private addresses")
    return addresses

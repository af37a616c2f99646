"""The proxy a transport's session uses when ``trust_env`` is on, read from the environment the
way curl, requests and httpx read it.

* ``HTTPS_PROXY`` / ``HTTP_PROXY`` (lower case first) for a URL of that scheme, else
  ``ALL_PROXY``; a proxy URL without a scheme is an ``http://`` one.
* ``NO_PROXY`` names hosts (``example.com`` also covers its subdomains, ``*`` every host) that
  are reached directly.
* Credentials come from the proxy URL's user info (percent-decoded) or, when it has none, from
  the ``.netrc`` entry of the proxy's host (``NETRC`` names the file, default ``~/.netrc``).
* A SOCKS proxy (or any scheme aiohttp cannot speak) is a
  :class:`~llm_async.errors.ConfigurationError` naming the variable, never a silent direct
  connection.

The proxy password is registered as a secret, so no error, log line or span shows it.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import aiohttp
from aiohttp.helpers import basicauth_from_netrc, netrc_from_env
from yarl import URL

from ...errors import ConfigurationError, register_secret

__all__ = ["env_proxy"]

_SUPPORTED = ("http", "https")


def _variable(key: str) -> str:
    """The environment variable a ``getproxies()`` key came from (as spelled there)."""
    for name in (f"{key}_proxy", f"{key.upper()}_PROXY"):
        if os.environ.get(name):
            return name
    return f"{key.upper()}_PROXY"


def env_proxy(url: str) -> dict[str, Any]:
    """Session options (``proxy``, ``proxy_auth``) for the proxy the environment sets for
    ``url``; empty when none applies."""
    target = URL(url)
    proxies = urllib.request.getproxies_environment()
    key = target.scheme if proxies.get(target.scheme) else "all"
    raw = proxies.get(key)
    if not raw:
        return {}
    if target.host is not None and urllib.request.proxy_bypass(target.host):
        return {}  # NO_PROXY names it
    proxy = URL(raw if "://" in raw else f"http://{raw}")
    host = proxy.host
    if proxy.scheme not in _SUPPORTED or not host:
        raise ConfigurationError(
            f"{_variable(key)} names a proxy aiohttp cannot use ({proxy.scheme or 'no'} "
            f"scheme, host {host!r}); use an http:// proxy, or set trust_env=False",
            variable=_variable(key))
    auth: aiohttp.BasicAuth | None = None
    if proxy.user is not None:
        auth = aiohttp.BasicAuth(proxy.user, proxy.password or "")
        proxy = proxy.with_user(None)
    else:
        try:
            auth = basicauth_from_netrc(netrc_from_env(), host)
        except LookupError:
            auth = None
    if auth is not None and auth.password:
        register_secret(auth.password)
    return {"proxy": proxy, "proxy_auth": auth}

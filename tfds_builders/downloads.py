"""Manual files first, else download: helpers shared by the builders.

TFDS's ``dl_manager.manual_dir`` raises AssertionError when the manual folder is missing or
empty, so builders read it through :func:`manual_dir`. Before a real download (TFDS's
downloader, or tf.io.gfile on gs://), :func:`check_reachable` opens one TCP connection to
the source host (or to the proxy that would carry the request) with a short time limit:
both downloaders retry a failing connection for minutes, the probe fails in seconds with
a message that names the URL and the ``--manual_dir`` alternative.

Set GENESIS_TF_SKIP_NETWORK_PROBE=1 to skip the probe (e.g. behind a network that allows
the download but refuses plain TCP connections to the host).
"""
import os
import socket
import threading
import time
import urllib.parse
import urllib.request

import tensorflow as tf

PROBE_TIMEOUT = 4.0  # seconds, DNS lookup and TCP connect together
SKIP_PROBE_ENV = "GENESIS_TF_SKIP_NETWORK_PROBE"
# tf.io.gfile talks to Google Cloud Storage through its JSON API on this host.
GCS_HOST = "www.googleapis.com"
_DEFAULT_PORTS = {"http": 80, "https": 443, "gs": 443}
# Replaced in tests to simulate an unreachable or hanging network.
_create_connection = socket.create_connection


class NetworkUnreachableError(RuntimeError):
    """The source of a download cannot be reached from this machine."""


def manual_dir(dl_manager):
    """The manual folder as a path string, or None when it is not set, missing or empty."""
    try:
        path = dl_manager.manual_dir
    except AssertionError:  # TFDS: "Manual directory ... does not exist or is empty"
        return None
    return os.fspath(path) if path else None


def configured_manual_dir(dl_manager):
    """The manual folder TFDS was given (it may not exist), for messages; None if unknown."""
    path = getattr(dl_manager, "_manual_dir", None)  # TFDS 4.9: set even when absent
    if path is None:
        path = manual_dir(dl_manager)
    return os.fspath(path) if path else None


def manual_files(dl_manager, names):
    """{key: path} of the files named by ``names`` ({key: file name}) found in manual_dir."""
    folder = manual_dir(dl_manager)
    if folder is None:
        return {}
    found = {}
    for key, name in names.items():
        path = os.path.join(folder, name)
        if tf.io.gfile.exists(path):
            found[key] = path
    return found


def probe_target(url):
    """(host, port) a download of ``url`` connects to first: the proxy, if one applies."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = GCS_HOST if scheme == "gs" else parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    proxy_scheme = "https" if scheme == "gs" else scheme
    proxy = urllib.request.getproxies().get(proxy_scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_parts.hostname:
            return proxy_parts.hostname, proxy_parts.port or _DEFAULT_PORTS.get(
                proxy_parts.scheme, 80)
    port = parts.port if scheme != "gs" else None
    return host, port or _DEFAULT_PORTS.get(scheme, 443)


def _connect(host, port, timeout):
    """None when a TCP connection to host:port opens within ``timeout``, else the reason.

    The attempt runs in a daemon thread because the DNS lookup inside
    socket.create_connection has no time limit of its own.
    """
    outcome = {}

    def attempt():
        try:
            _create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = True
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=attempt, name=f"probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome.get("ok"):
        return None
    if "error" not in outcome:
        return f"no answer within {timeout:g} s"
    error = outcome["error"]
    if isinstance(error, socket.gaierror):
        return f"DNS lookup failed: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


def check_reachable(url, advice, timeout=None):
    """Raises NetworkUnreachableError (naming ``url`` and ``advice``) if its host is down.

    Takes at most about ``timeout`` seconds (PROBE_TIMEOUT by default).
    """
    if os.environ.get(SKIP_PROBE_ENV, "").strip() not in ("", "0"):
        return
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    host, port = probe_target(url)
    start = time.monotonic()
    reason = _connect(host, port, timeout)
    if reason is None:
        return
    raise NetworkUnreachableError(
        f"Cannot download {url}: {host}:{port} is not reachable from this machine "
        f"({reason}; checked in {time.monotonic() - start:.1f} s). {advice} (If the "
        f"network does allow the download, set {SKIP_PROBE_ENV}=1 to skip this check.)"
    )


def _is_cached(dl_manager, url):
    """Whether TFDS would serve ``url`` from its download cache (no network needed).

    Reads private TFDS 4.9 state; any surprise counts as "not cached" (then the probe
    runs, which costs nothing on a machine with a network).
    """
    try:
        from tensorflow_datasets.core.download import resource as resource_lib

        if getattr(dl_manager, "_force_download", False):
            return False
        resource = resource_lib.Resource(url=url)
        info = dl_manager._url_infos.get(url)  # pylint: disable=protected-access
        candidates = []
        for legacy in (False, True):
            if info is not None:
                candidates.append(dl_manager._get_dl_path(  # pylint: disable=protected-access
                    resource, info.checksum, legacy_mode=legacy))
            candidates.append(dl_manager._get_dl_path(  # pylint: disable=protected-access
                resource, legacy_mode=legacy))
        return any(resource_lib.is_locally_cached(path) for path in candidates)
    except Exception:  # pylint: disable=broad-except
        return False


def download(dl_manager, urls, advice):
    """dl_manager.download(urls) for a {key: url} dict, after a fast reachability probe.

    Files already in TFDS's download cache skip the probe. A failing download (after the
    probe passed) becomes a RuntimeError that repeats ``advice``.
    """
    missing = [url for url in urls.values() if not _is_cached(dl_manager, url)]
    probed_hosts = set()
    for url in missing:
        target = probe_target(url)
        if target not in probed_hosts:
            check_reachable(url, advice)
            probed_hosts.add(target)
    try:
        paths = dl_manager.download(dict(urls))
    except Exception as error:  # HTTP error, connection lost, ...
        raise RuntimeError(
            f"could not download {', '.join(urls.values())} ({type(error).__name__}: "
            f"{error}). {advice}"
        ) from error
    return {key: os.fspath(path) for key, path in paths.items()}

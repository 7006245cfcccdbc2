"""A guard that lets sockets reach loopback (127.0.0.0/8, ::1, localhost) and Unix sockets only."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

BLOCKED: list[str] = []  # every refused attempt, "connect 10.0.0.1:80" / "resolve example.com"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach a non-loopback address."""


def is_loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_ip(host) -> bool:
    """A numeric address needs no name lookup; connecting to it is checked by ``connect``."""
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).split("%")[0])
        return True
    except ValueError:
        return False


def _check(sock, address, what: str) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # Unix sockets and the like
    if not is_loopback(address[0]):
        BLOCKED.append(f"{what} {address[0]}:{address[1]}")
        raise NetworkBlocked(f"tests may only reach loopback; refused {what} to {address[0]}:{address[1]}")


@contextlib.contextmanager
def loopback_only():
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def connect(self, address):
        _check(self, address, "connect")
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(self, address, "connect")
        return real_connect_ex(self, address)

    own = socket.gethostname()

    def getaddrinfo(host, *args, **kwargs):
        if not (
            is_loopback(host) or host == own or _is_ip(host)
        ):  # the machine's own name may be resolved; connecting is checked by address
            BLOCKED.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach loopback; refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
            real_connect,
            real_connect_ex,
            real_getaddrinfo,
        )

#!/usr/bin/env python3
"""Relay TCP ports of the host's loopback into a node's network namespace.

Nodes live in their own network namespaces, but the API server (and the plain registry) bind
127.0.0.1 of the host only. This process opens its listening sockets inside the node namespace
and connects out from the host namespace, so nothing but loopback and the node namespace is
ever involved.

Usage: nsrelay.py NETNS [ADDR:]PORT...
  each: listen on ADDR:PORT (default 127.0.0.1) in the node namespace -> host 127.0.0.1:PORT
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in_netns(netns: str, endpoints: list[tuple[str, int]]) -> list[socket.socket]:
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    node_ns = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    listeners = []
    try:
        _setns(node_ns)
        for address, port in endpoints:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(64)
            listeners.append(sock)
    finally:
        _setns(host_ns)  # every later socket (the outgoing ones) belongs to the host namespace
        os.close(host_ns)
        os.close(node_ns)
    return listeners


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    while True:
        conn, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            conn.close()
            continue
        upstream.settimeout(None)
        threading.Thread(target=_relay_pair, args=(conn, upstream), daemon=True).start()


def _relay_pair(a: socket.socket, b: socket.socket) -> None:
    back = threading.Thread(target=pump, args=(b, a), daemon=True)
    back.start()
    pump(a, b)
    back.join()
    a.close()
    b.close()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoints = []
    for arg in argv[1:]:
        address, _, port = arg.rpartition(":")
        endpoints.append((address or "127.0.0.1", int(port)))
    listeners = listen_in_netns(argv[0], endpoints)
    threads = [threading.Thread(target=serve, args=(sock,), daemon=True) for sock in listeners]
    for thread in threads:
        thread.start()
    print(f"relaying {argv[1:]} into {argv[0]}", flush=True)
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

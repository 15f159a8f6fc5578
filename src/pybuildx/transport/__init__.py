"""Getting a ``grpc.Channel`` to a BuildKit daemon: unix sockets, TCP with mutual TLS."""

from pybuildx.transport.channel import TLSFiles, open_channel, split_address

__all__ = ["TLSFiles", "open_channel", "split_address"]

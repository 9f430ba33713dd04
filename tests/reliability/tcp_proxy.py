"""A TCP proxy on 127.0.0.1 that a test can cut, to stand in for a database that restarts.

Each accepted connection is piped to the target by its own thread. `cut()` drops every open
connection at once, in the middle of whatever it carries, and refuses new ones (accepts and
resets them) until `restore()`: what clients see when PostgreSQL restarts, without touching the
PostgreSQL server that other test runs share.
"""

import contextlib
import select
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self.connections_cut = 0
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def open_connections(self) -> int:
        return len(self._open) // 2

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `restore()`."""
        with self._lock:
            self.refusing = True
            sockets, self._open = self._open, set()
            self.connections_cut += len(sockets) // 2
        for sock in sockets:
            # Shut down, not closed: the pipe thread selecting on it wakes up and closes it.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return  # cut: the sockets were reset under us
        finally:
            with self._lock:
                self._open -= {client, upstream}
            for sock in (client, upstream):
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed server's host does, rather than a polite FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass

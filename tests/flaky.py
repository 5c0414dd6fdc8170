"""A flaky TCP proxy on 127.0.0.1 for tests: resets some connections, stalls others, or trickles answers."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to ``target``; each new connection is, by a seeded draw,
    reset after its first bytes (probability ``reset``), stalled ``stall_s`` seconds before
    forwarding (``stall``), or passed through. With ``trickle_s`` > 0 (settable at any time), answers
    pass their first 2 KiB (the headers) and then one byte every ``trickle_s`` seconds, as a store that
    keeps a connection alive without progress does. Stop it with :meth:`stop`."""

    def __init__(
        self, target: tuple[str, int], *, reset: float = 0.15, stall: float = 0.1, stall_s: float = 1.5, seed: int = 0
    ) -> None:
        self.target, self.reset, self.stall, self.stall_s = target, reset, stall, stall_s
        self.trickle_s = 0.0
        self.rng = random.Random(seed)
        self.counts = {"reset": 0, "stall": 0, "ok": 0}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                draw = self.rng.random()
            fate = "reset" if draw < self.reset else "stall" if draw < self.reset + self.stall else "ok"
            with self.lock:
                self.counts[fate] += 1
            threading.Thread(target=self._handle, args=(client, fate), daemon=True).start()

    def _handle(self, client: socket.socket, fate: str) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return
        if fate == "reset":
            try:
                client.settimeout(5)
                client.recv(1024)  # the request starts, then the connection is reset
            except OSError:
                pass
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            upstream.close()
            return
        if fate == "stall":
            time.sleep(self.stall_s)
        for a, b, answer in ((client, upstream, False), (upstream, client, True)):
            threading.Thread(target=self._pipe, args=(a, b, answer), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, answer: bool) -> None:
        sent = 0
        try:
            while not self.stopping.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if answer and self.trickle_s > 0:
                    head, data = data[: max(0, 2048 - sent)], data[max(0, 2048 - sent) :]
                    dst.sendall(head)
                    sent += len(head)
                    for i in range(len(data)):
                        if self.stopping.is_set():
                            return
                        time.sleep(self.trickle_s)
                        dst.sendall(data[i : i + 1])
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

"""PostgreSQL goes away and comes back: 503 while it is down, the hub resumes by itself.

A TCP proxy stands in for the server's port (the shared PostgreSQL is not stopped): closing
it drops every connection and refuses new ones, as a restart does. The hub keeps no
pre-ping on checkout; a dead pooled connection fails its one request with a 503 and the
pool is emptied, so the first request after the restart is served.
"""
from __future__ import annotations

import socket
import threading

import pytest
import sqlalchemy as sa


class Proxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        except OSError:
            pass
        self._listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._socks.clear()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_503_while_postgresql_is_down_then_resumes_by_itself(settings, network, clock):
    url = sa.engine.make_url(settings.database_url)
    from hub import create_app
    from hub.db import make_engine

    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    app = create_app(settings, engine=engine, clock=clock)
    client = app.test_client()
    headers = network.headers("pp-shelter-a")
    try:
        for _ in range(3):  # a few pooled connections
            assert client.get("/api/v1/referrals", headers=headers).status_code == 200

        proxy.stop()
        for _ in range(3):
            resp = client.get("/api/v1/referrals", headers=headers)
            assert resp.status_code == 503
            assert resp.get_json()["error"]["code"] == "database_unavailable"
        assert client.get("/readyz").status_code == 503

        proxy.start()  # the same port again
        assert client.get("/api/v1/referrals", headers=headers).status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        proxy.stop()
        engine.dispose()

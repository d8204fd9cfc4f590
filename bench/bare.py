"""The stack's own limit, for `make bench-serve`: a bare Flask app answering a fixed list.

One route, `GET /users/<phone>/recommendations`, answering the same 10 goods to everyone
(jsonify per request, as an app would), hosted exactly as shoprecs is: CherryPy's tree in
cheroot with the service's limits and connection handling (`service.server.http_server`),
`--threads` threads, the port shared with SO_REUSEPORT so that several of these processes
stand for `shoprecs serve --workers N`. No snapshot, no shop rules, no access log, no
impressions: what is left is Flask, CherryPy and the network.

Run with: .venv/bin/python -m bench.bare --port 8099 --threads 2   (one process a worker)
"""
from __future__ import annotations

import argparse

import cherrypy
from cherrypy.process.servers import ServerAdapter
from flask import Flask, jsonify

GOODS = [{"goodsId": 10000 + i, "rating": round(1 - i / 20, 2), "name": f"Goods {i}",
          "price": 1.25 + i} for i in range(10)]


def app() -> Flask:
    bare = Flask("bare")

    @bare.get("/users/<phone>/recommendations")
    def recommendations(phone: str):
        return jsonify(GOODS)

    return bare


def main() -> None:
    from core.config import Settings
    from service.server import http_server

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cherrypy.tree.graft(app(), "/")
    cherrypy.config.update({"environment": "production", "engine.autoreload.on": False,
                            "log.screen": False, "checker.on": False})
    cherrypy.server.unsubscribe()
    ServerAdapter(cherrypy.engine, http_server(cherrypy.tree, Settings(), "127.0.0.1",
                                               args.port, args.threads, True)).subscribe()
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()


if __name__ == "__main__":
    main()

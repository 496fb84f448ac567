"""The baseline of bench.submit: a bare Flask + SQLAlchemy endpoint on the same gunicorn settings.

It parses the same request body as POST /api/v1/referrals (JSON, the two packets present)
and inserts one 4 KB row in one transaction; nothing else. ``BENCH_BARE_URL`` names the
database (the table ``bare_row`` exists already).
"""
from __future__ import annotations

import json
import os
import uuid

import sqlalchemy as sa
from flask import Flask, jsonify, request
from sqlalchemy import event

URL = os.environ["BENCH_BARE_URL"]
ROW_BYTES = 4096

metadata = sa.MetaData()
bare_row = sa.Table("bare_row", metadata, sa.Column("id", sa.String(36), primary_key=True),
                    sa.Column("payload", sa.LargeBinary, nullable=False))

if URL.startswith("sqlite"):
    engine = sa.create_engine(URL, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # the hub's durability settings, for a fair comparison
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
else:
    engine = sa.create_engine(URL, pool_recycle=300)

app = Flask(__name__)


@app.post("/bare")
def bare():
    raw = request.get_data()
    try:
        data = json.loads(raw)
    except ValueError:
        return jsonify(error="malformed_json"), 400
    if not isinstance(data, dict) or not isinstance(data.get("packets"), list) or len(data["packets"]) != 2:
        return jsonify(error="invalid_field"), 400
    row_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(bare_row.insert(), {"id": row_id, "payload": raw[:ROW_BYTES].ljust(ROW_BYTES, b" ")})
    return jsonify(id=row_id), 201

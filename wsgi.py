"""WSGI entry point: `gunicorn wsgi:app`. Creating the app starts no scheduler.

The umask comes first: every file a worker writes (the SQLite database and its -wal/-shm)
is the hub user's only.
"""
import os

from hub import create_app
from hub.config import PRIVATE_UMASK, lock_down_files

os.umask(PRIVATE_UMASK)
app = create_app()
lock_down_files(app.extensions["hub"].settings)

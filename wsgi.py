"""WSGI entry point: `gunicorn wsgi:app`. Creating the app starts no scheduler."""
from hub import create_app

app = create_app()

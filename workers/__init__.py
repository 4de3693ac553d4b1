"""The Celery side of nurture: `celery -A workers.app` points here."""

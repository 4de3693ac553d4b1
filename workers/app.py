"""The `celery -A workers.app` target: a worker or beat process builds its one runtime here."""

from nurture.config import load_settings
from nurture.runtime import create_runtime

app = create_runtime(load_settings()).celery

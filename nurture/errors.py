"""Errors a person can act on. The CLI prints them as one line and exits 1."""


class NurtureError(Exception):
    """A user-facing error: the message is shown as is, without a traceback."""


class ConfigError(NurtureError):
    pass


class NotFound(NurtureError):
    pass

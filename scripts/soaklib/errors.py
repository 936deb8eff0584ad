"""The one exception of the soak harness."""


class SoakError(RuntimeError):
    """The soak could not be set up or carried on (not a finding about the server)."""

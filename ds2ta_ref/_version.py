"""The version of ds2ta_ref: its one source (setup.cfg reads it with ``attr:``)."""

__version__ = "0.1.0"

"""newproxy: an HTTP proxy that runs what nginx configs describe, with nginx's behaviour."""

__version__ = "0.1.0"

"""newproxy: an HTTP proxy that runs what nginx configs describe, with nginx's behaviour."""

from newproxy import native

__version__ = "0.1.0"

native.install()  # before any hot-path module is imported: the compiled build, when it matches the sources

"""The package's version, in a module of its own so that any module can import it without
importing the package's ``__init__`` (and its lazy attributes): ``from galmet._version import __version__``."""

__version__ = "0.1.0"

"""caudal's version, in a module of its own so that any layer can name it (a plan file
records it, caudal.plan_file) without importing the package's front (caudal/__init__.py)."""

__version__ = "0.1.0"

"""The serving API: a Flask app factory and its CherryPy host."""
from service.app import create_app

__all__ = ["create_app"]

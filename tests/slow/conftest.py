"""Server fixtures for the slow tests."""

from tests.servers import moto_server

__all__ = ["moto_server"]

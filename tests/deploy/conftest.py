from tests.support.fixtures import admin, modelbus_server

__all__ = ["admin", "modelbus_server"]

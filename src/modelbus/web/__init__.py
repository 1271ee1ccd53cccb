"""The ASGI application: the HTTP API (:mod:`modelbus.web.api`) and the web console
(:mod:`modelbus.web.console`), and the wiring of ``modelbus serve``.
"""

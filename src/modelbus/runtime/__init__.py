"""Running models: runner processes, their pools, invocations and the model service.

Modules: :mod:`~modelbus.runtime.invocation` (payloads, results, the Invoker protocol),
:mod:`~modelbus.runtime.pool` (runner pools), :mod:`~modelbus.runtime.service` (the model
service every call goes through).
"""

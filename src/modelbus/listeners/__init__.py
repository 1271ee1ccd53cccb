"""Event listeners: definitions, the delivery runtime of each listener, and their manager.

::

    definition.py   ListenerDefinition: the fields of client.schemas.ListenerFields, validated
    files.py        the TOML listener file of ``serve --config``
    manager.py      ListenerManager: create, apply, pause, delete, sync, redrive (routes, CLI)
    hooks.py        webhook intake for ``POST /v1/hooks/NAME``
    credentials.py  credentials sealed in the store, masked everywhere else
    scaling.py      KEDA resources scaling nodes on listeners' backlogs (``deploy keda``)
    asyncapi.py     every listener as an AsyncAPI 3.0 document (``GET /v1/asyncapi.json``)

    lifecycle.py    ListenerRuntime: one running listener, start to graceful stop
      receive.py    free slots (max_in_flight), admission, the dedupe check
      decode.py     size check, envelopes, filter, object fetches
      invoke.py     one model call per input (batching.py: inputs grouped into batch calls)
      publish.py    results to every output sink, group-published
      settle.py     the decision carried out: run record or dead letter, then ack or release
      outcomes.py   what a delivery came to, and decide(): the one ack/retry/dead-letter choice
      leases.py     in-flight deliveries and their lease extension
      health.py     a listener's failing parts and last error (``degraded``)

    envelopes.py    raw bodies, CloudEvents, SNS and S3 events in; results, dead letters out
    filters.py      EventBridge-style filters
    retry.py        RetryPolicy: attempts and backoff
    records.py      run records and dead letters, group-committed (coalescer.py)
    metrics.py      per-listener Prometheus families

Connectors are reached only through :mod:`modelbus.connectors` and
:mod:`modelbus.connectors.base`, never a specific broker's module.
"""

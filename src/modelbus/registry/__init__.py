"""The model registry: models, immutable versions, builds, and version resolution.

Modules: :mod:`~modelbus.registry.catalog` (the :class:`Registry`: push, publish, resolve),
:mod:`~modelbus.registry.versioning` (versions, specs, model references),
:mod:`~modelbus.registry.manifest` (``modelbus.toml``), :mod:`~modelbus.registry.artifacts`
(content-addressed archives, the artifact stores every node shares),
:mod:`~modelbus.registry.builds` (environments) and :mod:`~modelbus.registry.launch` (how a
build's runner is started).
"""

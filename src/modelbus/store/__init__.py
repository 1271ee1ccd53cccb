"""The store: one database (SQLite or PostgreSQL), its schema and migrations, and the
records kept in it (run records and dead letters, jobs, API keys), plus the key that
encrypts stored secrets. Imports nothing of modelbus but :mod:`modelbus.errors` and
:mod:`modelbus.config`.
"""

"""The model service: the :class:`~modelbus.runtime.invocation.Invoker` the API and listeners call.

Each call resolves its :class:`~modelbus.client.refs.ModelRef` in the registry (so a new
publish is seen by the very next call), checks a JSON or text input against the version's
input schema, and runs it on the version's pool; results and errors carry the resolved
version. Asynchronous jobs are rows in the job store run by background tasks
(:mod:`modelbus.runtime.jobs`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import best_match

from modelbus.client.refs import ModelRef
from modelbus.errors import InputRejected, InvocationError, ModelError
from modelbus.registry.catalog import Registry, ResolvedVersion
from modelbus.registry.launch import RunnerSpec
from modelbus.runtime.invocation import CallOptions, OnResults, Payload, Result
from modelbus.runtime.jobs import JobRunner
from modelbus.runtime.pool import PoolManager
from modelbus.store.jobs import Job, JobStore

log = logging.getLogger("modelbus.runtime.service")

DEFAULT_MAX_RUNNING_JOBS = 16
RECENT_ERRORS_PER_MODEL = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class RecentError:
    """One failed invocation as the console lists it: when, which version, what, and the
    listener whose message it was (None for a call over HTTP, "try it" or a job)."""

    at: float
    version: str | None
    error_type: str
    message: str
    listener: str | None = None


class RecentErrors:
    """The last :data:`RECENT_ERRORS_PER_MODEL` invocation errors of each model run by this
    process (kept in memory: a restart forgets them; other processes keep their own)."""

    def __init__(self, per_model: int = RECENT_ERRORS_PER_MODEL) -> None:
        self._per_model = per_model
        self._errors: dict[tuple[str, str], deque[RecentError]] = {}

    def add(
        self, owner: str, name: str, error: InvocationError, *, listener: str | None = None
    ) -> None:
        """Remember ``error`` (stamped with its resolved version) of ``owner/name``, from a
        message of ``listener`` if given."""
        kept = self._errors.setdefault((owner, name), deque(maxlen=self._per_model))
        kept.append(
            RecentError(
                at=time.time(),
                version=error.version,
                error_type=error.error_type,
                message=error.message,
                listener=listener,
            )
        )

    def of(self, owner: str, name: str) -> list[RecentError]:
        """The model's remembered errors, newest first."""
        return list(reversed(self._errors.get((owner, name), ())))


class SchemaChecks:
    """A version's input and output JSON Schemas, compiled once per build (a build's schemas
    never change). Binary input is refused where an input schema is declared; binary output
    is not checked; text is checked as a JSON string.

    Every input of every message is checked, so the check is on the hot path: a schema that
    ``fastjsonschema`` can compile faithfully (drafts 4 to 7, or no ``$schema`` and none of
    the 2019-09/2020-12 keywords) is compiled to Python code, which accepts a valid value
    about a hundred times faster than ``jsonschema`` walks it. ``jsonschema`` keeps the last
    word: a value the fast check refuses is judged (and its problem named) by ``jsonschema``.
    """

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str], Any] = {}
        self._fast: dict[tuple[str, str], Callable[[Any], object] | None] = {}

    def check_input(self, spec: RunnerSpec, payload: Payload) -> None:
        """Raise :class:`InputRejected` (permanent) naming the offending field. A model that
        declares an input schema takes JSON (or text): binary input is refused, since
        the schema can say nothing about it and the model would get bytes it never expects."""
        if spec.input_schema is not None and payload.content_type == "binary":
            raise InputRejected(
                f"binary input ({len(payload.data)} bytes"
                f"{', ' + payload.mime if payload.mime else ''}) refused: the model's input "
                f"schema expects JSON ({_schema_summary(spec.input_schema)})"
            )
        problem = self._problem(spec.key, "input", spec.input_schema, payload)
        if problem:
            raise InputRejected(
                f"input rejected by the model's schema at {problem}{_not_json(payload)}"
            )

    def check_output(self, spec: RunnerSpec, result: Result) -> Result | ModelError:
        """``result``, or a :class:`ModelError` (error type ``OutputRejected``) when the
        model's output does not match the schema it declares."""
        problem = self._problem(spec.key, "output", spec.output_schema, result.output)
        if not problem:
            return result
        error = ModelError(
            f"the model's output does not match its output schema at {problem}",
            error_type="OutputRejected",
        )
        error.version = result.version
        return error

    def _problem(
        self, key: str, kind: str, schema: Mapping[str, object] | None, payload: Payload
    ) -> str | None:
        if schema is None or payload.content_type == "binary":
            return None
        value = payload.value()
        fast = (
            self._fast[key, kind] if (key, kind) in self._fast else self._fast_of(key, kind, schema)
        )
        if fast is not None:
            try:
                fast(value)
                return None
            except fastjsonschema.JsonSchemaException:
                pass  # jsonschema judges it and names the problem
        validator = self._compiled.get((key, kind))
        if validator is None:
            cls = jsonschema.validators.validator_for(schema)
            validator = self._compiled[key, kind] = cls(schema)
        found = best_match(validator.iter_errors(value))
        if found is None:
            return None
        where = "/".join(str(part) for part in found.absolute_path) or "(the top level)"
        return f"{where}: {found.message}"

    def _fast_of(
        self, key: str, kind: str, schema: Mapping[str, object]
    ) -> Callable[[Any], object] | None:
        fast: Callable[[Any], object] | None = None
        if _fast_compatible(schema):
            try:
                # Compiled as draft 7: the keywords it uses mean the same there.
                fast = fastjsonschema.compile({**schema, "$schema": _DRAFT_7})
            except Exception:  # a schema it cannot compile: jsonschema alone then
                fast = None
        self._fast[key, kind] = fast
        return fast


# Keywords of JSON Schema 2019-09 and 2020-12 that fastjsonschema (drafts 4-7) ignores: a
# schema using one is checked by jsonschema alone, or the fast path could accept too much.
_NEWER_KEYWORDS = frozenset(
    {
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$anchor",
        "$defs",
    }
)
_FAST_DRAFTS = ("draft-04", "draft-06", "draft-07")
_DRAFT_7 = "http://json-schema.org/draft-07/schema#"


def _fast_compatible(schema: Mapping[str, object]) -> bool:
    """Whether fastjsonschema (drafts 4-7) judges ``schema`` as jsonschema would: a draft
    4-7 schema, or a newer (or undeclared) one written in the keywords the drafts share."""
    declared = schema.get("$schema")
    if isinstance(declared, str) and any(draft in declared for draft in _FAST_DRAFTS):
        return True
    return not _uses(schema, _NEWER_KEYWORDS) and not _uses_item_lists(schema)


def _uses_item_lists(node: object) -> bool:
    """``items`` as a list: a tuple in drafts 4-7, an error from 2020-12 on."""
    if isinstance(node, Mapping):
        if isinstance(node.get("items"), list) or "additionalItems" in node:
            return True
        return any(_uses_item_lists(v) for v in node.values())
    if isinstance(node, list):
        return any(_uses_item_lists(v) for v in node)
    return False


def _uses(node: object, keywords: frozenset[str]) -> bool:
    if isinstance(node, Mapping):
        return any(k in keywords or _uses(v, keywords) for k, v in node.items())
    if isinstance(node, list):
        return any(_uses(v, keywords) for v in node)
    return False


def _not_json(payload: Payload) -> str:
    """Why a text input that the schema refused is not JSON, if it looks like it was meant
    to be (a body that failed to parse arrives as text)."""
    if payload.content_type != "text" or payload.data.lstrip()[:1] not in (b"{", b"["):
        return ""
    try:
        json.loads(payload.data)
    except ValueError as exc:
        return f" (the input is text, not valid JSON: {exc})"
    return ""


def _schema_summary(schema: Mapping[str, object]) -> str:
    """``type: object, required: text`` or the like: enough to say what the model wants."""
    parts = [f"type: {schema['type']}"] if "type" in schema else []
    required = schema.get("required")
    if isinstance(required, list) and required:
        parts.append("required: " + ", ".join(str(r) for r in required))
    return "; ".join(parts) or "a JSON Schema"


class ModelService:
    """Runs model versions for HTTP calls, jobs and listeners (implements ``Invoker``).

    Call :meth:`start` once the event loop runs (it resumes jobs left unfinished by a
    previous process) and :meth:`stop` before closing the pools.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        pools: PoolManager,
        jobs: JobStore,
        max_running_jobs: int = DEFAULT_MAX_RUNNING_JOBS,
    ) -> None:
        self._registry = registry
        self._pools = pools
        self._schemas = SchemaChecks()
        self._jobs = JobRunner(jobs, self, max_running=max_running_jobs)
        self.recent_errors = RecentErrors()

    async def resolve(self, ref: ModelRef) -> ResolvedVersion:
        """The version ``ref`` names now; raises NotFound subclasses or VersionSpecError."""
        return await self._registry.resolve(ref)

    async def version_of(self, ref: ModelRef) -> str:
        """The version ``ref`` resolves to now (see ``Invoker.version_of``)."""
        return (await self.resolve(ref)).label

    async def invoke(self, ref: ModelRef, payload: Payload, options: CallOptions) -> Result:
        """Resolve ``ref`` and run one input (see ``Invoker.invoke``). The timeout defaults
        to the version's own; errors carry the resolved ``version``."""
        resolved = await self.resolve(ref)
        outcome = (await self._run(resolved, [payload], options))[0]
        if isinstance(outcome, InvocationError):
            raise outcome
        return outcome

    async def invoke_batch(
        self,
        ref: ModelRef,
        payloads: Sequence[Payload],
        options: CallOptions,
        *,
        attributes: Sequence[Mapping[str, str]] | None = None,
        on_results: OnResults | None = None,
    ) -> list[Result | Exception]:
        """Resolve once and run several inputs, many to a runner call (see
        ``Invoker.invoke_batch``): one Result or InvocationError per input, in order;
        ``attributes`` holds one mapping per input, merged over ``options.attributes``;
        ``on_results`` hears of outcomes as they are known. Resolution errors are raised;
        ValueError when ``attributes`` has not one entry per input."""
        if attributes is not None and len(attributes) != len(payloads):
            raise ValueError(f"{len(attributes)} attributes for {len(payloads)} inputs")
        resolved = await self.resolve(ref)
        return list(await self._run(resolved, payloads, options, attributes, on_results))

    async def submit(
        self, ref: ModelRef, payload: Payload, options: CallOptions, *, key_id: str | None
    ) -> Job:
        """Queue one input to run in the background; returns the queued job at once.

        ``ref`` is resolved first, so an unknown model or version or a bad spec is raised
        now; the job itself resolves ``ref`` again when it runs.
        """
        await self.resolve(ref)
        return await self._jobs.submit(ref, payload, options, key_id=key_id)

    async def job(self, job_id: str) -> Job:
        """A job's current state; raises :class:`~modelbus.errors.JobNotFound`."""
        return await self._jobs.store.get(job_id)

    async def start(self) -> None:
        """Resume jobs a previous process left queued or running, and keep this process's
        claims on its jobs alive."""
        await self._jobs.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let running jobs finish for up to ``grace_s``, then cancel them (they stay
        unfinished in the store and the next start runs them again)."""
        await self._jobs.stop(grace_s)

    async def _run(
        self,
        resolved: ResolvedVersion,
        payloads: Sequence[Payload],
        options: CallOptions,
        attributes: Sequence[Mapping[str, str]] | None = None,
        on_results: OnResults | None = None,
    ) -> list[Result | InvocationError]:
        spec = resolved.runner_spec
        outcomes: list[Result | InvocationError | None] = [None] * len(payloads)
        accepted: list[int] = []
        rejected: list[int] = []
        for i, payload in enumerate(payloads):
            try:
                self._schemas.check_input(spec, payload)
                accepted.append(i)
            except InputRejected as exc:
                exc.version = resolved.label
                outcomes[i] = exc
                rejected.append(i)
        if on_results is not None and rejected:
            on_results(rejected, _known(outcomes, rejected))

        def ran(indexes: Sequence[int], results: Sequence[Result | Exception]) -> None:
            originals = [accepted[j] for j in indexes]
            for i, outcome in zip(originals, results, strict=True):
                assert isinstance(outcome, Result | InvocationError)
                if isinstance(outcome, Result):
                    outcome = self._schemas.check_output(spec, outcome)
                outcomes[i] = outcome
            if on_results is not None:
                on_results(originals, _known(outcomes, originals))

        if accepted:
            pool = self._pools.get(spec)
            results = await pool.invoke(
                [payloads[i] for i in accepted],
                options,
                version=resolved.label,
                attributes=None if attributes is None else [attributes[i] for i in accepted],
                on_results=ran,
            )
            untold = [j for j, i in enumerate(accepted) if outcomes[i] is None]
            if untold:
                ran(untold, [results[j] for j in untold])
        done = [o for o in outcomes if o is not None]
        listener = options.attributes.get("listener")  # a listener's calls say whose they are
        for outcome in done:
            if isinstance(outcome, InvocationError):
                self.recent_errors.add(resolved.owner, resolved.name, outcome, listener=listener)
        return done


def _known(
    outcomes: list[Result | InvocationError | None], indexes: Sequence[int]
) -> list[Result | Exception]:
    return [o for o in (outcomes[i] for i in indexes) if o is not None]

"""Native invocation routes: call a version and wait, or submit a job and fetch it later.

``POST /v1/models/{owner}/{name}[/versions/{spec}]/invoke`` answers with the result envelope
(``{"result", "metadata"}``) or an error with its proper status: 400 for a model error or a
rejected input, 504 for a timeout, 502 for a crashed runner, 503 when overloaded.
``.../jobs`` answers 202 with the queued job; ``GET /v1/jobs/{id}`` shows it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from modelbus.client.refs import ModelRef
from modelbus.client.schemas import CallEnvelope, CallMetadata, ErrorDetail, JobInfo
from modelbus.errors import JobNotFound
from modelbus.runtime.invocation import CallOptions
from modelbus.runtime.jobs import payload_of
from modelbus.store import jobs
from modelbus.store.keys import ADMIN, KeyInfo
from modelbus.web.api.auth import Caller, Key
from modelbus.web.api.context import services
from modelbus.web.api.errors import job_error_code, responses
from modelbus.web.api.payloads import INPUT_BODY, read_payload, result_envelope, result_value

router = APIRouter(tags=["invocations"])

Timeout = Annotated[
    float | None,
    Query(
        alias="timeout",
        gt=0,
        description="Seconds before the call is abandoned (default: the version's).",
    ),
]
Stdout = Annotated[bool, Query(description="Include what the model printed in metadata.stdout.")]
CALL_ERRORS = responses(400, 404, 413, 415, 500, 502, 503, 504)


async def _invoke(
    request: Request, ref: ModelRef, timeout_s: float | None, stdout: bool
) -> JSONResponse:
    payload = await read_payload(request)
    options = CallOptions(timeout_s=timeout_s, capture_stdout=stdout)
    result = await services(request).models.invoke(ref, payload, options)
    return JSONResponse(result_envelope(result, stdout=stdout))


@router.post(
    "/v1/models/{owner}/{name}/invoke",
    summary="Call the latest published version and wait for the result",
    response_model=CallEnvelope,
    responses=CALL_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def invoke_latest(
    request: Request,
    owner: str,
    name: str,
    key: Caller,
    timeout_s: Timeout = None,
    stdout: Stdout = False,
) -> JSONResponse:
    return await _invoke(request, ModelRef(owner, name), timeout_s, stdout)


@router.post(
    "/v1/models/{owner}/{name}/versions/{spec}/invoke",
    summary="Call a version (1.2.3, 1.2.*, 1.*, latest or a build hash) and wait",
    response_model=CallEnvelope,
    responses=CALL_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def invoke_version(
    request: Request,
    owner: str,
    name: str,
    spec: str,
    key: Caller,
    timeout_s: Timeout = None,
    stdout: Stdout = False,
) -> JSONResponse:
    return await _invoke(request, ModelRef(owner, name, spec), timeout_s, stdout)


def job_out(job: jobs.Job) -> JobInfo:
    """The API's view of a stored job."""
    result = None
    if job.output is not None:
        metadata = CallMetadata(
            content_type=job.output.content_type,
            duration=(job.duration_ms or 0.0) / 1000.0,
            version=job.version,
            mime=job.output.mime,
        )
        result = CallEnvelope(result=result_value(payload_of(job.output)), metadata=metadata)
    error = None
    if job.error is not None:
        error = ErrorDetail(
            message=job.error.message,
            error_type=job.error.error_type,
            code=job_error_code(job.error.error_type),
            stacktrace=job.error.stacktrace,
            version=job.version,
        )
    return JobInfo(
        id=job.id,
        status=job.status,
        owner=job.owner,
        name=job.name,
        spec=job.spec,
        version=job.version,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=result,
        error=error,
    )


async def _submit(
    request: Request, ref: ModelRef, timeout_s: float | None, key: KeyInfo
) -> JSONResponse:
    payload = await read_payload(request)
    options = CallOptions(timeout_s=timeout_s)
    job = await services(request).models.submit(ref, payload, options, key_id=key.id)
    return JSONResponse(job_out(job).model_dump(), status_code=202)


JOB_ERRORS = responses(400, 404, 413, 415, 500, 503)


@router.post(
    "/v1/models/{owner}/{name}/jobs",
    summary="Queue a call of the latest published version; fetch it from /v1/jobs/{id}",
    status_code=202,
    response_model=JobInfo,
    responses=JOB_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def submit_latest(
    request: Request, owner: str, name: str, key: Caller, timeout_s: Timeout = None
) -> JSONResponse:
    return await _submit(request, ModelRef(owner, name), timeout_s, key)


@router.post(
    "/v1/models/{owner}/{name}/versions/{spec}/jobs",
    summary="Queue a call of a version; fetch it from /v1/jobs/{id}",
    status_code=202,
    response_model=JobInfo,
    responses=JOB_ERRORS,
    openapi_extra=INPUT_BODY,
)
async def submit_version(
    request: Request, owner: str, name: str, spec: str, key: Caller, timeout_s: Timeout = None
) -> JSONResponse:
    return await _submit(request, ModelRef(owner, name, spec), timeout_s, key)


@router.get(
    "/v1/jobs/{job_id}",
    summary="A job's status, and its result or error once finished",
    response_model=JobInfo,
    responses=responses(404),
)
async def get_job(request: Request, job_id: str, key: Key) -> JobInfo:
    job = await services(request).models.job(job_id)
    if job.key_id != key.id and not key.allows(ADMIN):
        raise JobNotFound(f"no job {job_id!r}")  # another key's jobs are not even listed
    return job_out(job)

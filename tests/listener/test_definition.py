from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.errors import DefinitionError
from modelbus.listeners.definition import (
    ListenerDefinition,
    check_lease,
    load_definitions,
    model_ref,
    parse_definitions,
)


def make(**fields: object) -> ListenerDefinition:
    data: dict[str, object] = {"name": "l1", "source": "local://in", "model": "acme/ocr@1.*"}
    data.update(fields)
    return ListenerDefinition.from_mapping(data)


def test_defaults() -> None:
    d = make()
    assert (d.outputs, d.error_sink, d.max_in_flight, d.timeout_s) == ([], None, 100, None)
    assert (d.retry.max_attempts, d.retry.initial_backoff_s, d.retry.max_backoff_s) == (5, 1, 300)
    assert (d.batch.max_batch_size, d.batch.max_wait_ms) == (64, 0)
    assert d.extend_lease and d.enabled and d.output_mode == "cloudevent"
    assert str(d.ref) == "acme/ocr@1.*"
    assert make(model="acme/ocr").model == "acme/ocr@latest"


def test_frozen_and_strict() -> None:
    d = make()
    with pytest.raises(Exception, match="frozen"):
        d.name = "other"  # type: ignore[misc]
    with pytest.raises(DefinitionError, match="maxinflight: unknown field"):
        make(maxinflight=3)


@pytest.mark.parametrize(
    ("fields", "advice"),
    [
        ({"source": "kafka2://x"}, "unknown connector scheme"),
        ({"source": "local://"}, "names no queue"),
        ({"source": "local://a b"}, "contains spaces"),
        ({"source": "sqs://q:notaport"}, "not a valid URL"),
        ({"model": "just-a-name"}, "expected OWNER/NAME[@SPEC]"),
        ({"model": "acme/ocr@1.x.foo"}, "use 1.2.3, 1.2.*, 1.*, latest"),
        ({"outputs": ["local://in"]}, "is the source itself"),
        ({"outputs": ["local://o", "local://o"]}, "listed twice"),
        ({"error_sink": "local://o", "outputs": ["local://o"]}, "own sink"),
        ({"batch": {"max_batch_size": 0}}, "batch.max_batch_size"),
        ({"filter": {"body": {"a": [{"regex": "x"}]}}}, "unknown operator"),
        ({"name": "bad name"}, "name"),
        ({"retry": {"jitter": 2}}, "retry.jitter"),
        ({"output_mode": "xml"}, "output_mode"),
    ],
)
def test_refusals_say_what_to_change(fields: dict[str, object], advice: str) -> None:
    with pytest.raises(DefinitionError) as info:
        make(**fields)
    assert advice in str(info.value)


def test_a_list_of_brokers_is_a_valid_url() -> None:
    d = make(source="kafka://user:pw@k1:9092,k2:9092/orders", outputs=["nats://n1:4222,n2/x"])
    assert d.source == "kafka://user:pw@k1:9092,k2:9092/orders"
    with pytest.raises(DefinitionError, match="not a valid URL"):
        make(source="kafka://k1:9092,k2:notaport/orders")


def test_an_sns_topic_arn_is_a_valid_sink_url() -> None:
    arn = "sns://arn:aws:sns:us-east-1:123456789012:results?region=us-east-1"
    assert make(outputs=[arn]).outputs == [arn]


@pytest.mark.parametrize(
    "url",
    [
        "kafka://user:hunter2hunter2@k1:9092,k2:x/orders",
        "sqs://user:hunter2hunter2@q:notaport",
        "redis://:hunter2hunter2@h:6379/ a",
        "kafka9://user:hunter2hunter2@k1/orders",
    ],
)
def test_a_refused_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(DefinitionError) as info:
        make(source=url)
    assert "hunter2hunter2" not in str(info.value)
    assert "://***@" in str(info.value)  # the URL is named, by its shape


def test_an_output_folder_inside_the_watched_folder_is_a_loop(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="source itself"):
        make(source=f"dir://{tmp_path}", outputs=[f"dir://{tmp_path / 'results'}"])
    make(source=f"dir://{tmp_path / 'in'}", outputs=[f"dir://{tmp_path / 'out'}"])


def test_lease_check() -> None:
    check_lease(make(), 1.0)  # extension on: anything goes
    check_lease(make(extend_lease=False, timeout_s=5), None)  # no lease at all
    check_lease(make(extend_lease=False, timeout_s=5), 30)
    with pytest.raises(DefinitionError, match="lengthen the source's visibility timeout"):
        check_lease(make(extend_lease=False, timeout_s=30), 30)
    with pytest.raises(DefinitionError, match="set timeout_s below 30 s"):
        check_lease(make(extend_lease=False), 30)


def test_model_ref() -> None:
    assert str(model_ref("a/b@sha256:0123456789abcdef")) == "a/b@sha256:0123456789abcdef"
    with pytest.raises(DefinitionError):
        model_ref("a/b@")


def test_listener_files(tmp_path: Path) -> None:
    file = tmp_path / "listeners.toml"
    file.write_text(
        """
[[listeners]]
name = "ocr"
source = "dir:///srv/inbox"
model = "acme/ocr@1.*"
outputs = ["local://results"]

[listeners.filter.attributes]
key = [{ suffix = ".pdf" }]

[[listeners]]
name = "classify"
source = "local://results"
model = "acme/classify"
batch = { max_batch_size = 8, max_wait_ms = 50 }
"""
    )
    ocr, classify = load_definitions(file)
    assert ocr.filter == {"attributes": {"key": [{"suffix": ".pdf"}]}}
    assert classify.batch.max_batch_size == 8


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("listeners = 3", "expected only [[listeners]]"),
        ("[[listener]]\nname='x'", "expected only [[listeners]]"),
        ("[[listeners]]\nname = ", "not valid TOML"),
        ("[[listeners]]\nname='a'\nsource='local://x'\nmodel='a/b'\n" * 2, "used twice: a"),
        ("[[listeners]]\nname='a'\nsource='local://x'\nmodel='a'", "listeners[0]: model"),
    ],
)
def test_bad_listener_files(text: str, advice: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definitions(text, where="f.toml")
    assert advice in str(info.value)
    assert str(info.value).startswith("f.toml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read listener file"):
        load_definitions(tmp_path / "nope.toml")


def test_outputs_on_the_same_server_as_the_source_are_not_the_source() -> None:
    """Brokers that name the queue in the query (redis, nats, amqp, postgresql) may publish
    results to another queue on the same server; the very same queue is still refused."""
    base = {"name": "same-server", "model": "acme/m@1.0.0"}
    for source, output in [
        ("redis://127.0.0.1:6379/0?stream=in", "redis://127.0.0.1:6379/0?stream=out"),
        ("nats://127.0.0.1:4222?stream=S&subject=in", "nats://127.0.0.1:4222?stream=S&subject=out"),
        (
            "amqp://guest:guest@127.0.0.1:5672/?queue=in",
            "amqp://guest:guest@127.0.0.1:5672/?queue=out",
        ),
        ("postgresql://127.0.0.1/test?table=a", "postgresql://127.0.0.1/test?table=b"),
    ]:
        ListenerDefinition.from_mapping({**base, "source": source, "outputs": [output]})
        with pytest.raises(DefinitionError, match="is the source itself"):
            ListenerDefinition.from_mapping(
                {**base, "source": source, "outputs": [source + "&lease_s=5"]}
            )

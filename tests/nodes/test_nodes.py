"""Several nodes on one PostgreSQL store, as separate processes: they list each other, a
killed one is shown gone, a folder listener moves to another node when its owner dies, a
shared listener's figures are summed over nodes, a dead letter of one node is redriven
through another's API, and nodes that cannot work together are refused at start."""

from __future__ import annotations

import html
import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from modelbus.client.schemas import ListenerStatusOut
from modelbus.connectors.webhook import sign
from modelbus.errors import ModelError
from tests.serve.conftest import eventually
from tests.support.server import MODELBUS, ModelbusServer, clean_env, free_port

from .conftest import FAST, Nodes

pytestmark = pytest.mark.postgres

FAILOVER_S = 30.0  # the promise: an unshareable listener runs again within 30 s
HOOK_SECRET = "hook-secret-0123456789"


def states(status: ListenerStatusOut) -> dict[str, str]:
    return {part.node: part.state for part in status.nodes}


def node_id(server: ModelbusServer) -> str:
    with server.client() as client:
        return next(n.id for n in client.nodes() if n.this)


def test_nodes_list_each_other_and_a_killed_node_is_shown_gone(nodes: Nodes) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    a_id, b_id = node_id(a), node_id(b)
    with a.client() as client:
        listed = {n.id: n for n in client.nodes()}
        assert set(listed) == {a_id, b_id}
        assert {n.address for n in listed.values()} == {a.url, b.url}
        assert all(n.state == "live" and n.workers == 1 for n in listed.values())
        assert [n.this for n in (listed[a_id], listed[b_id])] == [True, False]
        assert listed[b_id].version == listed[a_id].version
        assert listed[b_id].pid == b.process.pid  # type: ignore[union-attr]

    b.kill()
    with a.client() as client:
        gone = eventually(lambda: next(n for n in client.nodes() if n.state == "gone"), 15)
        assert gone.id == b_id and gone.stopped_at is None  # killed: silent, not stopped
        assert [n.id for n in client.nodes(gone=False)] == [a_id]

    # the CLI prints the same, as JSON or as a table
    env = clean_env({"MODELBUS_URL": a.url, "MODELBUS_API_KEY": a.admin_key})
    printed = subprocess.run(
        [MODELBUS, "nodes", "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert {(n["id"], n["state"]) for n in json.loads(printed.stdout)} == {
        (a_id, "live"),
        (b_id, "gone"),
    }
    table = subprocess.run(
        [MODELBUS, "nodes", "--live"], env=env, capture_output=True, text=True, check=True
    )
    assert f"{a_id[:8]} *" in table.stdout and b_id[:8] not in table.stdout


def test_a_folder_listener_moves_to_another_node_when_its_owner_is_killed(
    nodes: Nodes, tmp_path: Path
) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    nodes.push_echo()
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    with a.client() as client:
        client.create_listener(
            {
                "name": "folder",
                "source": f"dir://{inbox}?poll_ms=100",
                "model": "test/echo@1.0.0",
                "outputs": [f"dir://{outbox}"],
            }
        )
    servers = {node_id(a): a, node_id(b): b}

    def one_runs_one_waits() -> dict[str, str] | None:
        with a.client() as client:
            found = states(client.listener_status("folder"))
        return found if sorted(found.values()) == ["running", "standby"] else None

    placed = eventually(one_runs_one_waits, 30)
    owner_id = next(node for node, state in placed.items() if state == "running")
    owner = servers.pop(owner_id)
    ((survivor_id, survivor),) = servers.items()

    (inbox / "before.txt").write_text("before the kill")
    eventually(lambda: any(outbox.glob("before.txt*")), 30)

    owner.kill()
    killed_at = time.monotonic()
    (inbox / "after.txt").write_text("after the kill")
    eventually(lambda: any(outbox.glob("after.txt*")), FAILOVER_S)
    assert time.monotonic() - killed_at < FAILOVER_S

    with survivor.client() as client:
        # the new owner did not wait for the dead one to be shown gone (its process was
        # seen dead on this host); once it is, it is not part of the sum any more
        status = eventually(
            lambda: (s := client.listener_status("folder")).nodes[1:] == [] and s, 15
        )
        assert states(status) == {survivor_id: "running"}
        assert status.state == "running"
        assert status.counters["succeeded"] >= 1
    # the survivor found the first file again in the folder: it is not run twice (a dotfile
    # is the sink's temporary file, which the killed owner may have left behind)
    results = [p.name for p in outbox.iterdir() if not p.name.startswith(".")]
    assert sorted(name.split(".")[0] for name in results) == ["after", "before"]


def post_hook(server: ModelbusServer, hook: str, n: int, **more: object) -> None:
    body = json.dumps({"n": n, **more}).encode()
    answer = httpx.post(
        f"{server.url}/v1/hooks/{hook}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Modelbus-Signature": sign(HOOK_SECRET, body),
            "Idempotency-Key": f"{hook}-{n}",
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text


def test_a_shared_listener_runs_on_every_node_and_its_figures_are_summed(
    nodes: Nodes, tmp_path: Path
) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    nodes.push_echo()
    outbox = tmp_path / "outbox"
    with a.client() as client:
        client.create_listener(
            {
                "name": "orders",
                "source": f"webhook://orders?secret={HOOK_SECRET}&poll_ms=50",
                "model": "test/echo@1.0.0",
                "outputs": [f"dir://{outbox}"],
            }
        )
    a_id, b_id = node_id(a), node_id(b)
    with b.client() as client:  # b picks the new listener up from the store
        eventually(lambda: states(client.listener_status("orders")).get(b_id) == "running", 30)

    for i in range(2):
        post_hook(a, "orders", i)
    for i in range(2, 5):
        post_hook(b, "orders", i)

    def summed() -> ListenerStatusOut | None:
        with a.client() as client:
            status = client.listener_status("orders")
        return status if status.counters.get("succeeded") == 5 else None

    status = eventually(summed, 30)
    per_node = {part.node: part for part in status.nodes}
    assert per_node[a_id].counters["succeeded"] == 2
    assert per_node[b_id].counters["succeeded"] == 3
    assert status.nodes[0].node == a_id  # the answering node first
    assert {part.state for part in status.nodes} == {"running"}
    assert status.state == "running"
    assert status.counters["received"] == 5
    with b.client() as client:  # any node answers the same sum
        eventually(lambda: client.listener_status("orders").counters["succeeded"] == 5, 10)
        listed = {n.id: n for n in client.nodes()}
    assert listed[a_id].listeners_running == ["orders"]
    assert [entry.counters["succeeded"] for entry in listed[b_id].listeners] == [3]

    page = console_page(a, "/console/listeners/orders")  # the console shows each node
    assert f"<code>{a_id[:8]}</code> (this one)" in page and f"<code>{b_id[:8]}</code>" in page
    assert b.url in page


def both_parts(status: ListenerStatusOut, *ids: str) -> dict[str, dict[str, float]] | None:
    """The per-node counters of ``status`` once it lists exactly the nodes ``ids``."""
    parts = {part.node: part.counters for part in status.nodes}
    return parts if set(parts) == set(ids) else None


def test_a_dead_letter_is_redriven_through_another_node(nodes: Nodes, tmp_path: Path) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    nodes.push_echo()
    outbox = tmp_path / "outbox"
    with a.client() as client:
        client.create_listener(
            {
                "name": "late",
                "source": f"webhook://late?secret={HOOK_SECRET}&poll_ms=50",
                # no 9.* exists: a message waits out its one attempt, then is dead-lettered
                "model": "test/echo@9.*",
                "outputs": [f"dir://{outbox}"],
                "retry": {"max_attempts": 1},
            },
            check=False,  # refused when checked: 9.* is nothing
        )
    a_id, b_id = node_id(a), node_id(b)
    with b.client() as client:  # B picks the new listener up from the store
        eventually(lambda: states(client.listener_status("late")).get(b_id) == "running", 30)

    post_hook(a, "late", 1)  # a webhook event is run by the node that accepted it: A
    with a.client() as on_a:
        [letter] = eventually(lambda: on_a.dead_letters("late").items, 30)
        # both parts listed (B's comes with its next heartbeat): A dead-lettered it, B did not
        per_node = eventually(lambda: both_parts(on_a.listener_status("late"), a_id, b_id), 15)
    assert letter.error_type == "VersionNotFound" and letter.message_id == "late-1"
    assert per_node[a_id]["dead_lettered"] == 1 and per_node[b_id]["dead_lettered"] == 0

    with b.client() as on_b:  # B never saw the message: it has the letter from the store
        result = on_b.redrive("late", spec="1.0.*", rate_per_s=50)
    assert result.redriven == [letter.id] and result.failed == {}
    assert result.model == "test/echo@1.0.*"
    [output] = [p for p in outbox.iterdir() if not p.name.startswith(".")]
    assert json.loads(output.read_bytes())["data"] == {"n": 1}
    with a.client() as on_a:  # A sees the run again and the letter marked
        [run] = on_a.runs("late-1", listener="late")
        assert (run.status, run.version) == ("succeeded", "1.0.0")
        assert on_a.dead_letter(letter.id).redriven_to == "test/echo@1.0.*"
        assert on_a.dead_letters("late", include_redriven=False).items == []
        assert [d.id for d in on_a.dead_letters("late").items] == [letter.id]


def test_a_version_page_lists_the_errors_every_nodes_listeners_met(nodes: Nodes) -> None:
    """A model error met by a listener on node B shows on node A's version page, beside a
    failed call to A itself; B's own page shows the listener's error, not A's call."""
    a, b = nodes.start("a"), nodes.start("b")
    nodes.push_echo()
    with a.client() as client:
        client.create_listener(
            {
                "name": "refuses",
                "source": f"webhook://refuses?secret={HOOK_SECRET}&poll_ms=50",
                "model": "test/echo@1.0.0",
                "retry": {"max_attempts": 1},
            }
        )
        with pytest.raises(ModelError):
            client.call("test/echo@1.0.0", {"fail": "a call to A went wrong"})
    b_id = node_id(b)
    with b.client() as client:
        eventually(lambda: states(client.listener_status("refuses")).get(b_id) == "running", 30)
    post_hook(b, "refuses", 1, fail_permanent="B's listener met a bad input")
    with a.client() as on_a:
        eventually(lambda: on_a.dead_letters("refuses").items, 30)
    path = "/console/models/test/echo/versions/1.0.0"
    on_a_page, on_b_page = (html.unescape(console_page(n, path)) for n in (a, b))
    assert "B's listener met a bad input" in on_a_page and "refuses" in on_a_page
    assert "a call to A went wrong" in on_a_page
    assert "B's listener met a bad input" in on_b_page
    assert "a call to A went wrong" not in on_b_page  # a call's error stays with its server


def console_page(server: ModelbusServer, path: str) -> str:
    """A console page, logged in with the admin key through the login form."""
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        form = browser.get("/console/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', form)
        assert token is not None
        browser.post(
            "/console/login",
            data={"api_key": server.admin_key, "login_token": token[1], "next": path},
        )
        answer = browser.get(path)
        assert answer.status_code == 200, answer.text
        return answer.text


def serve_refused(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``modelbus serve`` that must refuse to start; returns what it printed."""
    argv = [MODELBUS, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), *args]
    done = subprocess.run(
        argv, env=clean_env(env), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).split())


def test_a_node_with_another_secret_key_is_refused(nodes: Nodes) -> None:
    a = nodes.start("a")
    with a.client() as client:  # a stored broker password, encrypted with a's key
        client.create_listener(
            {
                "name": "guarded",
                "source": "redis://:s3cr3t-password@127.0.0.1:6379/0?stream=guarded",
                "model": "test/echo@1.0.0",
                "outputs": ["local://results"],
                "enabled": False,
            },
            check=False,
        )
    other_key = Fernet.generate_key().decode()
    printed = serve_refused(
        nodes.tmp / "b",
        "--database-url",
        nodes.database_url,
        *FAST,
        env={"MODELBUS_SECRET_KEY": other_key},
    )
    assert "secret key (MODELBUS_SECRET_KEY) cannot decrypt" in printed
    assert "guarded" in printed and "same MODELBUS_SECRET_KEY" in printed
    assert "s3cr3t" not in printed

    # without the variable, the key file made in its own data directory is named
    printed = serve_refused(nodes.tmp / "c", "--database-url", nodes.database_url, *FAST)
    assert f"the key file {nodes.tmp / 'c' / 'secret.key'}" in printed

    nodes.start("d")  # the same key: welcome
    # a lost key: started anyway on request, the listener is reported, not run
    nodes.start("e", "--ignore-undecryptable", secret_key=other_key)
    with a.client() as client:
        assert len(client.nodes(gone=False)) == 3


def test_a_second_node_on_a_sqlite_store_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ModelbusServer.start(data, args=FAST) as first:
        printed = serve_refused(data)
        assert "another modelbus serve uses this SQLite store" in printed
        assert "PostgreSQL" in printed and first.url in printed
        first.kill()
        # killed: its row still looks fresh, but its process is gone: a restart is welcome
        first.restart()
        with first.client() as client:
            listed = eventually(lambda: [n.state for n in client.nodes()] == ["live", "gone"])
            assert listed

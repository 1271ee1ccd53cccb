"""``algorithmia-api-client`` 1.5.5 (the generated management client) against a real server:
every answer it reads must carry the fields it requires (it refuses ``null`` in them)."""

from __future__ import annotations

from pathlib import Path

from modelbus.client import Client
from tests.support.algorithmia_api import ApiClientEnv, api_client
from tests.support.fixtures import Published, echo_as
from tests.support.server import ModelbusServer

__all__ = ["api_client"]


def test_calls_answer_with_async_and_request_id(
    server: ModelbusServer, api_client: ApiClientEnv
) -> None:
    out = api_client.run(
        server,
        """
        algorithms = api.AlgorithmsApi(client)
        ok = algorithms.call_algorithm("test", "echo", "1.0.0", {"n": [1, 2]})
        out["ok"] = ok.to_dict()
        failed = algorithms.call_algorithm("test", "echo", "1.0.0", {"fail": "broke"})
        out["failed"] = failed.to_dict()
        """,
    )
    assert out["ok"]["result"] == {"n": [1, 2]}
    assert out["ok"]["_async"] is False
    assert out["ok"]["request_id"]
    assert out["ok"]["metadata"]["content_type"] == "json"
    assert "broke" in out["failed"]["error"]["message"]
    assert out["failed"]["request_id"] != out["ok"]["request_id"]


def test_algorithm_versions_and_builds_parse(
    server: ModelbusServer, published: Published, api_client: ApiClientEnv
) -> None:
    build = published.echo_builds["1.1.0"]
    out = api_client.run(
        server,
        f"""
        algorithms = api.AlgorithmsApi(client)
        out["algorithm"] = algorithms.get_algorithm("test", "echo").to_dict()
        versions = algorithms.get_algorithm_versions("test", "echo", limit=10)
        out["versions"] = [v.version_info.semantic_version for v in versions.results]
        out["insights"] = [v.version_info.insights_enabled for v in versions.results]
        builds = algorithms.get_algorithm_builds("test", "echo")
        out["builds"] = [b.to_dict() for b in builds.results]
        out["build"] = algorithms.get_algorithm_build_by_id("test", "echo", "{build}").to_dict()
        out["logs"] = algorithms.get_algorithm_build_logs("test", "echo", "{build}").logs
        out["by_hash"] = algorithms.get_algorithm_hash_version("test", "echo", "{build}").to_dict()
        """,
    )
    assert out["algorithm"]["version_info"]["semantic_version"] == "2.0.0"
    assert out["algorithm"]["version_info"]["insights_enabled"] is False
    assert out["versions"] == ["2.0.0", "1.1.0", "1.0.0", None]
    assert set(out["insights"]) == {False}
    unversioned = [b for b in out["builds"] if b["version_info"] is None]
    assert [b["build_id"] for b in unversioned] == [published.unpublished_build]
    assert out["build"]["version_info"] == {"semantic_version": "1.1.0"}
    assert out["build"]["status"] == "succeeded"
    assert "build of test/echo" in out["logs"]
    assert out["by_hash"]["version_info"]["git_hash"] == build


def test_create_publish_update_delete(
    server: ModelbusServer, admin: Client, api_client: ApiClientEnv, tmp_path: Path
) -> None:
    script = """
        algorithms = api.AlgorithmsApi(client)
        settings = models.SettingsMandatory(
            license="apl", network_access="full", pipeline_enabled=True,
            source_visibility="closed", language="python3-1",
        )
        request = models.CreateRequest(
            name="viagen", details=models.Details(label="Via"), settings=settings
        )
        out["created"] = algorithms.create_algorithm("gen", request).to_dict()
        """
    out = api_client.run(server, script)
    assert out["created"]["name"] == "viagen"
    assert out["created"]["details"]["label"] == "Via"
    admin.push(echo_as(tmp_path, "gen", "viagen", "generated"))
    out = api_client.run(
        server,
        """
        algorithms = api.AlgorithmsApi(client)
        info = models.VersionInfoPublish(
            version_type="major", release_notes="r1", insights_enabled=False
        )
        published = algorithms.publish_algorithm(
            "gen", "viagen", models.VersionRequest(version_info=info)
        )
        out["published"] = published.to_dict()
        update = models.UpdateRequest(details=models.Details(label="Renamed"))
        algorithms.update_algorithm("gen", "viagen", update)
        out["label"] = algorithms.get_algorithm("gen", "viagen").details.label
        algorithms.delete_algorithm("gen", "viagen")
        try:
            algorithms.get_algorithm("gen", "viagen")
        except ApiException as exc:
            out["after_delete"] = exc.status
        """,
    )
    assert out["published"]["version_info"]["semantic_version"] == "1.0.0"
    assert out["published"]["version_info"]["release_notes"] == "r1"
    assert out["label"] == "Renamed"
    assert out["after_delete"] == 404

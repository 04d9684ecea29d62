"""The Kubernetes manifests: valid against Kubernetes schemas offline, and deployable as intended.

Every resource file and the `kustomize build` output of every variant are validated with
kubernetes-validate, strictly (unknown fields rejected), against the oldest and newest
Kubernetes versions listed below. kustomize runs as `kubectl kustomize` when kubectl is
installed; without it those cases are skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from apscheduler.triggers.cron import CronTrigger

from service.config import PollSettings, load_settings, parse_cron

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = PROJECT_ROOT / "deploy" / "kubernetes"
VARIANTS = ("daemon", "postgresql", "cronjob")
# CronJob.spec.timeZone is stable from Kubernetes 1.27, so that is the oldest version checked.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
NON_ROOT_UID = 10001


def _documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def _resource_files() -> list[Path]:
    """Every file that a kustomization lists under `resources`, plus the Secret example."""
    files = [KUBERNETES_DIR / "base" / "secret.example.yaml"]
    for kustomization in sorted(KUBERNETES_DIR.glob("*/kustomization.yaml")):
        data = yaml.safe_load(kustomization.read_text())
        for entry in data.get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                files.append(path)
    return files


def _kustomize_build(variant: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed, so `kubectl kustomize` cannot build the variants")
    completed = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES_DIR / variant)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return _documents(completed.stdout)


def _validate(document: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def _of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [document for document in documents if document["kind"] == kind]
    return found


def _cron_interval_s(expression: str) -> float:
    trigger = CronTrigger(**parse_cron(expression), timezone=UTC)
    first = trigger.get_next_fire_time(None, datetime(2026, 1, 5, tzinfo=UTC))
    second = trigger.get_next_fire_time(first, first)
    return float((second - first).total_seconds())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _resource_files(), ids=lambda path: path.name)
def test_manifest_file_validates(path: Path, version: str) -> None:
    documents = _documents(path.read_text())

    assert documents
    for document in documents:
        _validate(document, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_kustomize_build_validates(variant: str, version: str) -> None:
    documents = _kustomize_build(variant)

    assert documents
    for document in documents:
        _validate(document, version)


def test_validation_rejects_unknown_field() -> None:
    # The strict check must be able to fail: a misspelt field is an error.
    cronjob = _documents((KUBERNETES_DIR / "cronjob" / "cronjob.yaml").read_text())[0]
    cronjob["spec"]["concurrencyPolicyy"] = "Forbid"

    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(cronjob, KUBERNETES_VERSIONS[-1])


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    if document["kind"] == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return document["spec"]["template"]["spec"]


def _assert_locked_down(pod: dict[str, Any]) -> None:
    pod_context = pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == NON_ROOT_UID
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["runAsNonRoot"] is True
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/data", "/tmp", "/etc/cspm-watch", "/run/secrets/cspm-watch"} <= mounts


def test_cronjob_deadlines_nest_inside_interval() -> None:
    documents = _kustomize_build("cronjob")
    cronjob = _of_kind(documents, "CronJob")
    config = yaml.safe_load(_of_kind(documents, "ConfigMap")["data"]["config.yaml"])
    spec = cronjob["spec"]
    job = spec["jobTemplate"]["spec"]
    interval_s = _cron_interval_s(spec["schedule"])
    (container,) = _pod_spec(cronjob)["containers"]
    target = container["args"][container["args"].index("--target") + 1]
    (target_config,) = [entry for entry in config["targets"] if entry["name"] == target]
    poll_timeout_s = PollSettings(**target_config.get("poll", {})).timeout_s

    assert container["args"][0] == "once"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < interval_s
    assert poll_timeout_s < job["activeDeadlineSeconds"] < interval_s
    assert job["backoffLimit"] <= 2
    assert job["ttlSecondsAfterFinished"] > 0
    assert _pod_spec(cronjob)["restartPolicy"] == "Never"
    _assert_locked_down(_pod_spec(cronjob))
    # SQLite keeps the finding states between runs only on a PersistentVolumeClaim.
    assert config["database_url"].startswith("sqlite")
    volumes = {volume["name"]: volume for volume in _pod_spec(cronjob)["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert _of_kind(documents, "PersistentVolumeClaim")["metadata"]["name"] == claim


def test_daemon_deployment_probes_and_security() -> None:
    documents = _kustomize_build("daemon")
    deployment = _of_kind(documents, "Deployment")
    pod = _pod_spec(deployment)
    (container,) = pod["containers"]
    service = _of_kind(documents, "Service")

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container["args"] == ["run"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    _assert_locked_down(pod)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "cspm-watch"
    assert volumes["config"]["configMap"]["name"].startswith("cspm-watch-config-")


def test_postgresql_variant_runs_replicas_without_claim() -> None:
    documents = _kustomize_build("postgresql")
    deployment = _of_kind(documents, "Deployment")
    pod = _pod_spec(deployment)
    (container,) = pod["containers"]
    environment = {entry["name"]: entry for entry in container["env"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    secret_ref = environment["CSPM_WATCH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "cspm-watch-postgresql", "key": "database-url"}
    assert "persistentVolumeClaim" not in volumes["data"]
    assert "emptyDir" in volumes["data"]
    assert not [document for document in documents if document["kind"] == "PersistentVolumeClaim"]
    assert _of_kind(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    _assert_locked_down(pod)


def test_secret_example_holds_placeholders_only() -> None:
    documents = _documents((KUBERNETES_DIR / "base" / "secret.example.yaml").read_text())

    for document in documents:
        assert document["kind"] == "Secret"
        for key, value in document["stringData"].items():
            assert "REPLACE_WITH" in value, f"{document['metadata']['name']}.{key}"


def test_configmap_config_loads_with_secret_files(tmp_path: Path) -> None:
    text = (KUBERNETES_DIR / "base" / "config.yaml").read_text()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "digitalocean-token").write_text("dop_v1_" + "0" * 64)
    (secrets_dir / "slack-webhook-url").write_text("https://hooks.slack.com/services/T0/B0/x")
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("/run/secrets/cspm-watch", str(secrets_dir)))

    settings = load_settings(config, {})

    assert [target.name for target in settings.targets] == ["production"]
    assert settings.listen_port == 8080
    assert settings.database_url == "sqlite+aiosqlite:////data/cspm-watch.db"

"""The Helm chart (deploy/helm/cdp) and the Dockerfile, checked offline.

Renders go through helm-python-sdk (the Helm v4 SDK) and every rendered object is
validated, strict, against the Kubernetes OpenAPI schemas of two Kubernetes versions.
"""

from __future__ import annotations

import ast
import base64
import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python  # helm-python-sdk (requirements-dev.txt): a missing tool is a failure, not a skip
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "cdp"
RELEASE = "demo"
NAMESPACE = "cdp-test"

# Two Kubernetes versions the installed kubernetes-validate ships schemas for.
K8S_VERSIONS = ("1.29", "1.33")

# The eight services of DESIGN.md with their default gRPC ports.
SERVICES = {
    "ingest": 50051,
    "identity": 50052,
    "profile": 50053,
    "segment": 50054,
    "prediction": 50055,
    "journey": 50056,
    "channel-gateway": 50057,
    "analytics": 50058,
}
FULLNAME = f"{RELEASE}-cdp"

ALL_ENABLED = {"services": {name: {"enabled": True} for name in SERVICES}}
AUTOSCALING_ALL = {
    "services": {
        name: {"enabled": True, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 7}}
        for name in SERVICES
    }
}
EXTERNAL = {
    "nats": {"enabled": False},
    "postgresql": {"enabled": False},
    "externalNats": {"url": "nats://nats.messaging.svc:4222"},
    "externalDatabase": {"url": "postgresql://cdp:s3cret@db.example.com:5432/postgres"},
}
EXISTING_SECRETS = {
    "nats": {"enabled": False},
    "postgresql": {"enabled": False},
    "externalNats": {"existingSecret": "nats-conn", "existingSecretKey": "url"},
    "externalDatabase": {"existingSecret": "db-conn", "existingSecretKey": "dsn"},
    "auth": {"existingSecret": "cdp-jwt"},
}
SCENARIOS = {
    "defaults": {},
    "all-enabled": ALL_ENABLED,
    "autoscaling-all": AUTOSCALING_ALL,
    "external": EXTERNAL,
    "existing-secrets": {**EXISTING_SECRETS, **ALL_ENABLED},
}


# ---- fixtures and helpers ---------------------------------------------------------


def split_manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt and empty documents skipped)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def render_raw(values: dict[str, Any] | None = None, name: str = RELEASE) -> dict[str, str]:
    # A fresh load per render: rendering drops disabled dependencies from the loaded
    # chart object (Helm's ProcessDependencies mutates it), so a shared handle would
    # leak one test's `postgresql.enabled: false` into the next.
    with helm_python.Chart.load(CHART_DIR) as fresh:
        return fresh.render(values or {}, name=name, namespace=NAMESPACE)


@pytest.fixture
def chart() -> Iterator[Any]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def render() -> Callable[..., list[dict[str, Any]]]:
    def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return split_manifests(render_raw(values))

    return _render



def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        _deep_merge(out, copy.deepcopy(part))
    return out


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def cdp_objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of the cdp chart itself (not the subcharts), keyed by component."""
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/name") == "cdp"
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = container(deployment)["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in entries}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def env_key(service: str) -> str:
    return service.upper().replace("-", "_")


# ---- lint and chart metadata ---------------------------------------------------------


def test_lint_reports_no_errors() -> None:
    for opts in ({}, {"strict": True, "with_subcharts": True}, {"kube_version": "v1.29.0"}):
        report = helm_python.lint(CHART_DIR, **opts)
        assert report["errors"] == [], (opts, report)
        severe = [m for m in report["messages"] if m["severity"] >= 2]
        assert severe == [], (opts, severe)


def test_chart_requires_kubernetes_with_grpc_probes(chart: Any) -> None:
    # Native gRPC probes are GA from 1.27: older clusters must refuse the chart.
    assert chart.metadata["kubeVersion"] == ">=1.27.0-0"


def test_dependencies_are_local_subcharts_behind_conditions(chart: Any) -> None:
    deps = {d["name"]: d for d in chart.metadata["dependencies"]}
    assert deps["nats"]["condition"] == "nats.enabled"
    assert deps["postgresql"]["condition"] == "postgresql.enabled"
    assert deps["nats"]["repository"] == "file://charts/nats"
    assert deps["postgresql"]["repository"] == "file://charts/postgresql"
    statuses = {d["name"]: d["status"] for d in helm_python.dependency_list(CHART_DIR)}
    assert statuses == {"nats": statuses["nats"], "postgresql": statuses["postgresql"]}
    assert set(statuses.values()) <= {"ok", "unpacked"}, statuses
    assert {d["name"] for d in chart.dependencies} == {"nats", "postgresql"}
    assert chart.metadata["apiVersion"] == "v2"


def test_values_list_every_service_with_its_design_port(chart: Any) -> None:
    services = chart.values["services"]
    assert {name: svc["port"] for name, svc in services.items()} == SERVICES
    assert services["ingest"]["httpPort"] == 8088
    assert {n for n, s in services.items() if s["enabled"]} == {"ingest", "identity", "profile", "segment", "prediction"}
    for name, svc in services.items():
        assert {"enabled", "port", "replicas", "autoscaling", "resources", "env", "podDisruptionBudget"} <= set(svc), name
        assert {"enabled", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"} <= set(svc["autoscaling"])


def test_chart_ports_match_the_runtime_defaults(chart: Any) -> None:
    """The chart's ports equal cdp_core.settings' defaults (read without importing it)."""
    settings = REPO / "libs" / "cdp_core" / "src" / "cdp_core" / "settings.py"
    if not settings.exists():
        pytest.skip("cdp_core settings not present")
    tree = ast.parse(settings.read_text())
    consts: dict[str, Any] = {}
    for node in tree.body:
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            try:
                consts[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    assert consts["SERVICES"] == SERVICES
    assert consts["DEFAULT_HTTP_PORT"] == chart.values["services"]["ingest"]["httpPort"]


# ---- schema ----------------------------------------------------------------------------


def test_schema_is_draft_07() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["properties"]["services"]["additionalProperties"] == {"$ref": "#/definitions/service"}


@pytest.mark.parametrize("values", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_schema_accepts_the_supported_scenarios(chart: Any, values: dict[str, Any]) -> None:
    chart.validate_schema(values)


BAD_VALUES = {
    "port-not-a-number": {"services": {"ingest": {"port": "abc"}}},
    "port-out-of-range": {"services": {"identity": {"port": 70000}}},
    "unknown-service-key": {"services": {"ingest": {"replica": 3}}},
    "unknown-service-name": {"services": {"ingets": {"enabled": True, "port": 50051}}},
    "unknown-top-level-key": {"servces": {}},
    "replicas-negative": {"services": {"profile": {"replicas": -1}}},
    "autoscaling-not-bool": {"services": {"profile": {"autoscaling": {"enabled": "yes"}}}},
    "pdb-both-bounds": {"services": {"ingest": {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}}},
    "env-without-name": {"services": {"ingest": {"env": [{"value": "x"}]}}},
    "bad-pull-policy": {"default": {"image": {"pullPolicy": "Sometimes"}}},
    "bad-database-url": {"externalDatabase": {"url": "mysql://db:3306"}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)
    # and an install with them never gets as far as rendering
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# ---- every rendered object is a valid Kubernetes object ---------------------------------


def test_kubernetes_validate_supports_the_chosen_versions() -> None:
    supported = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    assert set(K8S_VERSIONS) <= supported, sorted(supported)


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("values", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_rendered_objects_validate_strictly(render: Any, values: dict[str, Any], k8s_version: str) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {k8s_version}: {exc.message} at {list(exc.path)}")


def test_strict_validation_catches_a_typo() -> None:
    """Guard: the validator used above does reject an unknown field."""
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": False}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


# ---- what gets rendered ---------------------------------------------------------------


def test_defaults_render_enabled_services_and_dev_backends(render: Any) -> None:
    docs = render()
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
        assert set(cdp_objects(docs, kind)) == {"ingest", "identity", "profile", "segment", "prediction"}, kind
    assert cdp_objects(docs, "HorizontalPodAutoscaler") == {}
    statefulsets = of_kind(docs, "StatefulSet")
    assert set(statefulsets) == {f"{RELEASE}-nats", f"{RELEASE}-postgresql"}
    services = of_kind(docs, "Service")
    assert services[f"{RELEASE}-nats"]["spec"]["ports"][0]["port"] == 4222
    assert services[f"{RELEASE}-postgresql"]["spec"]["ports"][0]["port"] == 5432
    # the dev servers keep their data on PVCs
    for sts in statefulsets.values():
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    nats_conf = of_kind(docs, "ConfigMap")[f"{RELEASE}-nats-config"]["data"]["nats.conf"]
    assert "jetstream" in nats_conf and "store_dir: /data" in nats_conf
    assert f"{FULLNAME}-auth" in of_kind(docs, "Secret")
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_every_service_enabled(render: Any) -> None:
    docs = render(ALL_ENABLED)
    deployments = cdp_objects(docs, "Deployment")
    services = cdp_objects(docs, "Service")
    assert set(deployments) == set(SERVICES)
    assert set(services) == set(SERVICES)
    assert set(cdp_objects(docs, "ServiceAccount")) == set(SERVICES)
    assert set(cdp_objects(docs, "PodDisruptionBudget")) == set(SERVICES)
    for name, port in SERVICES.items():
        dep = deployments[name]
        assert dep["metadata"]["name"] == f"{FULLNAME}-{name}"
        c = container(dep)
        assert c["image"] == f"cdp/{name}:0.1.0"
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["grpc"] == port
        env = env_of(dep)
        assert env[f"CDP_{env_key(name)}_GRPC_PORT"]["value"] == str(port)
        ports = {p["name"]: p for p in services[name]["spec"]["ports"]}
        assert ports["grpc"]["port"] == port
        assert ports["grpc"]["targetPort"] == "grpc"
        assert ports["grpc"]["appProtocol"] == "grpc"
        if name == "ingest":
            assert ports["http"]["port"] == 8088
            assert env["CDP_HTTP_PORT"]["value"] == "8088"
            assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == 8088
        else:
            assert set(ports) == {"grpc"}
            assert "CDP_HTTP_PORT" not in env
    assert "CDP_CHANNEL_GATEWAY_GRPC_PORT" in env_of(deployments["channel-gateway"])


def test_names_fit_kubernetes_limits_with_a_long_release() -> None:
    docs = split_manifests(render_raw(ALL_ENABLED, name="a-rather-long-release-name-for-cdp-prod"))
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name


def test_autoscaling_adds_hpa_and_drops_replicas(render: Any) -> None:
    values = merged(AUTOSCALING_ALL, {"services": {"identity": {"autoscaling": {"enabled": False}, "replicas": 3}}})
    docs = render(values)
    hpas = cdp_objects(docs, "HorizontalPodAutoscaler")
    deployments = cdp_objects(docs, "Deployment")
    assert set(hpas) == set(SERVICES) - {"identity"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployments[name]["metadata"]["name"],
        }
        assert hpa["spec"]["minReplicas"] == 2
        assert hpa["spec"]["maxReplicas"] == 7
        cpu = hpa["spec"]["metrics"][0]["resource"]
        assert cpu["name"] == "cpu" and cpu["target"] == {"type": "Utilization", "averageUtilization": 70}
        assert "replicas" not in deployments[name]["spec"], name
    assert deployments["identity"]["spec"]["replicas"] == 3


def test_autoscaling_min_above_max_fails(chart: Any) -> None:
    values = {"services": {"ingest": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}}
    with pytest.raises(helm_python.HelmRenderError, match="minReplicas"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_pod_disruption_budgets(render: Any) -> None:
    values = {
        "services": {
            "identity": {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
            "profile": {"podDisruptionBudget": {"enabled": False}},
        }
    }
    docs = render(values)
    pdbs = cdp_objects(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"ingest", "identity", "segment", "prediction"}
    assert pdbs["ingest"]["apiVersion"] == "policy/v1"
    assert pdbs["ingest"]["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdbs["ingest"]["spec"]
    assert pdbs["identity"]["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdbs["identity"]["spec"]
    pod_labels = cdp_objects(docs, "Deployment")["identity"]["spec"]["template"]["metadata"]["labels"]
    assert pdbs["identity"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# ---- the Deployment contract ------------------------------------------------------------


@pytest.mark.parametrize("values", [ALL_ENABLED, AUTOSCALING_ALL], ids=["all-enabled", "autoscaling-all"])
def test_deployments_probe_grpc_on_the_service_port_and_run_locked_down(render: Any, values: dict[str, Any]) -> None:
    deployments = cdp_objects(render(values), "Deployment")
    assert len(deployments) == len(SERVICES)
    for name, dep in deployments.items():
        port = SERVICES[name]
        pod = dep["spec"]["template"]["spec"]
        c = container(dep)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": port}, (name, probe)
        assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 60
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        # a writable /tmp on the read-only root filesystem
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        # graceful shutdown
        assert pod["terminationGracePeriodSeconds"] == 30
        assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
        # no API token: the services never talk to the Kubernetes API
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == f"{FULLNAME}-{name}"
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for sa in cdp_objects(render(values), "ServiceAccount").values():
        assert sa["automountServiceAccountToken"] is False


def test_labels_and_selectors(render: Any) -> None:
    docs = render(ALL_ENABLED)
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
        for name, obj in cdp_objects(docs, kind).items():
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "cdp"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/component"] == name
            assert labels["app.kubernetes.io/part-of"] == "cdp"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == "cdp-0.1.0"
    deployments = cdp_objects(docs, "Deployment")
    services = cdp_objects(docs, "Service")
    for name, dep in deployments.items():
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert services[name]["spec"]["selector"] == selector
        # selectors are immutable: they must not carry the chart version
        assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector
    # each selector picks exactly its own component
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deployments.values()]
    assert len(set(selectors)) == len(selectors)


def test_env_with_bundled_backends(render: Any) -> None:
    docs = render(ALL_ENABLED)
    secrets = of_kind(docs, "Secret")
    auth = secret_data(secrets[f"{FULLNAME}-auth"])
    assert len(auth["auth-secret"]) >= 32
    pg_secret = secret_data(secrets[f"{RELEASE}-postgresql"])
    assert len(pg_secret["password"]) >= 16
    pg_env = {e["name"]: e for e in container(of_kind(docs, "StatefulSet")[f"{RELEASE}-postgresql"])["env"]}
    for name, dep in cdp_objects(docs, "Deployment").items():
        env = env_of(dep)
        order = [e["name"] for e in container(dep)["env"]]
        assert env["CDP_NATS_URL"]["value"] == f"nats://{RELEASE}-nats:4222"
        assert env["CDP_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgresql", "key": "password"}
        assert env["CDP_DATABASE_URL"]["value"] == (
            f"postgresql://{pg_env['POSTGRES_USER']['value']}:$(CDP_DATABASE_PASSWORD)@{RELEASE}-postgresql:5432/postgres"
        )
        # Kubernetes expands $(VAR) only from variables defined earlier in the list
        assert order.index("CDP_DATABASE_PASSWORD") < order.index("CDP_DATABASE_URL")
        assert env["CDP_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-auth", "key": "auth-secret"}
        assert "value" not in env["CDP_AUTH_SECRET"]
        otel = env["OTEL_SERVICE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert otel == "metadata.labels['app.kubernetes.io/component']"
        assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == name
        assert env["CDP_LOG_LEVEL"]["value"] == "info"
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    # the postgres server gets the same password Secret
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgresql", "key": "password"}
    # and creates each service's database on first start
    initdb = of_kind(docs, "ConfigMap")[f"{RELEASE}-postgresql-initdb"]["data"]["01-databases.sql"]
    for name in SERVICES:
        assert f'CREATE DATABASE "cdp_{env_key(name).lower()}";' in initdb


def test_env_with_external_backends(render: Any) -> None:
    docs = render(merged(EXTERNAL, ALL_ENABLED))
    assert of_kind(docs, "StatefulSet") == {}
    names = {d["metadata"]["name"] for d in docs}
    assert not any(n.startswith((f"{RELEASE}-nats", f"{RELEASE}-postgresql")) for n in names), names
    db_secret = of_kind(docs, "Secret")[f"{FULLNAME}-database"]
    assert secret_data(db_secret) == {"database-url": EXTERNAL["externalDatabase"]["url"]}
    for dep in cdp_objects(docs, "Deployment").values():
        env = env_of(dep)
        assert env["CDP_NATS_URL"] == {"name": "CDP_NATS_URL", "value": "nats://nats.messaging.svc:4222"}
        # the URL carries a password: never a plain value in the pod spec
        assert env["CDP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-database", "key": "database-url"}
        assert "CDP_DATABASE_PASSWORD" not in env
        assert env["CDP_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-auth"


def test_existing_secrets_are_used_and_not_created(render: Any) -> None:
    docs = render(merged(EXISTING_SECRETS, ALL_ENABLED))
    assert of_kind(docs, "Secret") == {}
    for dep in cdp_objects(docs, "Deployment").values():
        env = env_of(dep)
        assert env["CDP_NATS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "nats-conn", "key": "url"}
        assert env["CDP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db-conn", "key": "dsn"}
        assert env["CDP_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "cdp-jwt", "key": "auth-secret"}


def test_given_auth_secret_is_stored_in_the_chart_secret(render: Any) -> None:
    docs = render({"auth": {"secret": "a-known-signing-secret-of-decent-length"}})
    assert secret_data(of_kind(docs, "Secret")[f"{FULLNAME}-auth"]) == {"auth-secret": "a-known-signing-secret-of-decent-length"}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nats": {"enabled": False}}, "externalNats"),
        ({"postgresql": {"enabled": False}}, "externalDatabase"),
        ({"services": {"ingest": {"env": [{"name": "CDP_AUTH_SECRET", "value": "plain"}]}}}, "CDP_AUTH_SECRET"),
        ({"default": {"env": [{"name": "CDP_AUTH_SECRET", "value": "plain"}]}}, "CDP_AUTH_SECRET"),
    ],
    ids=["nats-off-without-url", "postgresql-off-without-url", "auth-secret-in-service-env", "auth-secret-in-default-env"],
)
def test_invalid_combinations_fail_the_render(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_env_overrides_replace_in_place(render: Any) -> None:
    values = {
        "default": {
            "logLevel": "debug",
            "otlpEndpoint": "http://otel-collector:4317",
            "env": [{"name": "SHARED", "value": "default"}, {"name": "ONLY_DEFAULT", "value": "d"}],
        },
        "services": {
            "ingest": {
                "env": [
                    {"name": "SHARED", "value": "ingest"},
                    {"name": "CDP_LOG_LEVEL", "value": "warning"},
                    {"name": "CDP_INGEST_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "ingest-db", "key": "url"}}},
                ]
            }
        },
    }
    deployments = cdp_objects(render(values), "Deployment")
    ingest, identity = env_of(deployments["ingest"]), env_of(deployments["identity"])
    assert ingest["SHARED"]["value"] == "ingest"
    assert identity["SHARED"]["value"] == "default"
    assert ingest["ONLY_DEFAULT"]["value"] == identity["ONLY_DEFAULT"]["value"] == "d"
    assert ingest["CDP_LOG_LEVEL"]["value"] == "warning"
    assert identity["CDP_LOG_LEVEL"]["value"] == "debug"
    assert ingest["CDP_INGEST_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ingest-db"
    assert "CDP_INGEST_DATABASE_URL" not in identity
    assert ingest["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4317"
    # an override keeps the original position (so $(VAR) references stay resolvable)
    order = [e["name"] for e in container(deployments["ingest"])["env"]]
    assert order.index("CDP_LOG_LEVEL") < order.index("CDP_NATS_URL")


def test_per_service_image_override(render: Any) -> None:
    values = {
        "default": {"image": {"tag": "1.2.3", "pullPolicy": "Always"}},
        "services": {"profile": {"image": {"repository": "mirror/profile", "tag": "9.9.9"}}},
    }
    deployments = cdp_objects(render(values), "Deployment")
    assert container(deployments["ingest"])["image"] == "cdp/ingest:1.2.3"
    assert container(deployments["ingest"])["imagePullPolicy"] == "Always"
    assert container(deployments["profile"])["image"] == "mirror/profile:9.9.9"


def test_scheduling_and_annotations_default_with_per_service_override(render: Any) -> None:
    values = {
        "default": {
            "schedulingRules": {"nodeSelector": {"pool": "general"}, "tolerations": [{"key": "a", "operator": "Exists"}]},
            "podAnnotations": {"team": "cdp"},
        },
        "services": {"ingest": {"schedulingRules": {"nodeSelector": {"pool": "edge"}}, "podAnnotations": {"edge": "yes"}}},
    }
    deployments = cdp_objects(render(values), "Deployment")
    ingest, identity = (deployments[n]["spec"]["template"] for n in ("ingest", "identity"))
    assert ingest["spec"]["nodeSelector"] == {"pool": "edge"}
    assert identity["spec"]["nodeSelector"] == {"pool": "general"}
    assert ingest["spec"]["tolerations"] == identity["spec"]["tolerations"] == [{"key": "a", "operator": "Exists"}]
    assert ingest["metadata"]["annotations"] == {"team": "cdp", "edge": "yes"}
    assert identity["metadata"]["annotations"] == {"team": "cdp"}
    assert "affinity" not in identity["spec"]


def test_notes_name_the_services() -> None:
    rendered = render_raw(ALL_ENABLED)
    notes = next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))
    for name, port in SERVICES.items():
        assert f"{FULLNAME}-{name}.{NAMESPACE}.svc:{port}" in notes


# ---- the Dockerfile (parsed, not built: no Docker engine here) ---------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _dockerfile_instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_dockerfile_is_multi_stage_with_a_service_argument() -> None:
    instructions = _dockerfile_instructions()
    global_args = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        assert keyword == "ARG", keyword
        global_args.append(rest)
    assert "PYTHON_IMAGE=python:3.11-slim" in global_args
    stages = _stages()
    assert len(stages) >= 2
    names = [re.search(r"\bAS\s+(\S+)", s[0][1], re.I).group(1) for s in stages]  # type: ignore[union-attr]
    assert names[-1] == "runtime"
    for stage in stages:
        assert stage[0][1].startswith("${PYTHON_IMAGE}")
        uses_service = any("${SERVICE}" in rest or "$SERVICE" in rest for _, rest in stage[1:])
        if uses_service:
            # an ARG declared before FROM is not visible inside a stage
            assert ("ARG", "SERVICE") in stage, f"stage {stage[0][1]} uses SERVICE without ARG SERVICE"
    build, runtime = stages[0], stages[-1]
    runs = " ".join(rest for kw, rest in build if kw == "RUN")
    assert "-c constraints.txt" in runs
    assert "./libs/cdp_proto" in runs and "./libs/cdp_core" in runs and "./services/${SERVICE}" in runs
    assert runs.index("./libs/cdp_proto") < runs.index("./services/${SERVICE}")
    assert "tr '-' '_'" in runs  # channel-gateway -> cdp_channel_gateway
    assert "exec /opt/cdp/bin/python -m" in runs
    # runtime: non-root uid 10001, exec-form entrypoint
    assert ("USER", "10001:10001") in runtime
    assert any(kw == "COPY" and rest.startswith(f"--from={names[0]} ") for kw, rest in runtime)
    entrypoint = [rest for kw, rest in runtime if kw == "ENTRYPOINT"]
    assert len(entrypoint) == 1 and json.loads(entrypoint[0]) == ["/opt/cdp/bin/cdp-service"]
    user_idx = runtime.index(("USER", "10001:10001"))
    assert not any(kw == "RUN" for kw, _ in runtime[user_idx:]), "nothing may run as root after USER"


def test_dockerfile_copies_only_what_exists_and_dockerignore_allows() -> None:
    ignore = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the build context is an allow-list"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for keyword, rest in _dockerfile_instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} excluded by .dockerignore"
            if "${SERVICE}" not in src:
                assert (REPO / src).exists(), src
    for lib in ("libs/cdp_proto", "libs/cdp_core"):
        assert (REPO / lib / "pyproject.toml").exists()


def _service_package(name: str) -> tuple[str, Path]:
    pyproject = REPO / "services" / name / "pyproject.toml"
    return pyproject.read_text(), pyproject.parent


def test_every_enabled_service_has_a_buildable_package(chart: Any) -> None:
    """An image exists only for services/<name>; the chart may not enable one that has none."""
    problems = []
    for name, svc in chart.values["services"].items():
        directory = REPO / "services" / name
        if not (directory / "pyproject.toml").exists():
            if svc["enabled"]:
                problems.append(f"services.{name} is enabled but services/{name}/pyproject.toml is missing")
            continue
        text = (directory / "pyproject.toml").read_text()
        dist = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M)
        if not dist or dist.group(1) != f"cdp-{name}":
            problems.append(f"services/{name}: distribution name should be cdp-{name}")
        module = "cdp_" + name.replace("-", "_")
        if not list(directory.glob(f"**/{module}/__main__.py")):
            problems.append(f"services/{name}: no {module}/__main__.py (the image runs python -m {module})")
    assert problems == [], "\n".join(problems)


def test_values_yaml_parses_to_what_helm_loads(chart: Any) -> None:
    # values.yaml must be plain YAML, identical to Helm's view (which adds the
    # subcharts' defaults under their keys)
    local = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    helm_view = chart.values
    for key in ("nats", "postgresql"):
        assert local.pop(key).items() <= helm_view.pop(key).items()
    assert local == helm_view

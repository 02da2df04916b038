"""manifests/: every file parses, the CRDs are what scripts/gen_crds.py makes, their schemas accept Istio's
published config and reject unknown fields, and the deployment pieces agree with each other and with what
pilot.sources.kube watches.

No API server runs here, so the CRD schemas are checked with a small validator of the openAPIV3 subset
gen_crds.py emits (object/properties/additionalProperties, array/items, string/enum, integer with
minimum/maximum, number, boolean), applying the API server's rules: a field the schema does not list is
kept where the node says ``x-kubernetes-preserve-unknown-fields`` and is an error elsewhere (strict field
validation), and null means unset (the server prunes nulls of non-nullable fields).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.config import kinds
from pilot.config.parse import parse_text
from pilot.sources import kube as kube_source
from tests.corpus import CORPUS, served_documents, served_files

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
CORPUS_FILES = served_files()
MANIFEST_FILES = sorted(
    p for p in MANIFESTS.rglob("*.yaml") if "docker-compose" not in p.relative_to(MANIFESTS).parts
)
ISTIO_KINDS = ("VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "WorkloadGroup")


def load_gen_crds() -> Any:
    spec = importlib.util.spec_from_file_location("gen_crds", ROOT / "scripts" / "gen_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_crds", module)
    spec.loader.exec_module(module)
    return module


Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def documents(path: Path) -> list[dict[str, Any]]:
    """The objects of one file (parsed once: the CRDs are large; treat the result as read-only)."""
    return [doc for doc in yaml.load_all(path.read_text(), Loader=Loader) if doc is not None]


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFEST_FILES if "cert-manager" not in path.parts for doc in documents(path)]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d for d in all_documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def crd_schema(kind: str, version: str = "v1") -> dict[str, Any]:
    crd = find("CustomResourceDefinition", f"{kube_source.ISTIO_RESOURCES[kind]}.networking.istio.io")
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


# -- a validator of the openAPIV3 subset gen_crds.py emits ---------------------------------------------------


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    if value is None:
        return []  # pruned by the API server: unset
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        errors: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                errors += validate(item, properties[key], where)
            elif isinstance(additional, dict):
                errors += validate(item, additional, f"{path}[{key}]")
            elif properties is None and additional is None:
                continue  # free-form (metadata: the API server has its own schema)
            elif schema.get("x-kubernetes-preserve-unknown-fields"):
                continue  # kept as written, never pruned
            else:
                errors.append(f'{where}: unknown field "{key}"')
        return errors
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [e for i, item in enumerate(value) for e in validate(item, schema["items"], f"{path}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{path}: {value!r} is not one of {schema['enum']}"]
        return []
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: expected an integer"]
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return [f"{path}: {value} is out of range"]
        return []
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    raise AssertionError(f"{path}: schema type {kind!r} is not in the supported subset")


def schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from schema_nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        yield from schema_nodes(schema["items"], f"{path}[]")


# -- every manifest ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_manifest_parses(path: Path):
    docs = documents(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)
        assert doc["metadata"]["name"]


def test_namespaced_objects_live_in_pilot_system_and_files_apply_in_order():
    names = [p.name for p in MANIFEST_FILES if p.parent == MANIFESTS]
    assert names == sorted(names) and names[0] == "00-namespace.yaml"  # kubectl apply -f dir: file order
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    }
    for doc in all_documents():
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == kube_source.DEFAULT_PILOT_NAMESPACE, doc["kind"]


# -- CRDs ----------------------------------------------------------------------------------------------------


def test_committed_crds_are_current():
    gen_crds = load_gen_crds()
    assert (MANIFESTS / "10-crds.yaml").read_text() == gen_crds.render(), "run scripts/gen_crds.py"
    assert gen_crds.main(["--check"]) == 0


def test_crds_serve_three_versions_with_v1_stored():
    for kind in ISTIO_KINDS:
        crd = find("CustomResourceDefinition", f"{kube_source.ISTIO_RESOURCES[kind]}.networking.istio.io")
        assert crd["spec"]["names"]["kind"] == kind
        versions = [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]]
        assert versions == [("v1", True, True), ("v1beta1", True, False), ("v1alpha3", True, False)]
        schemas = [v["schema"] for v in crd["spec"]["versions"]]
        assert all(s == schemas[0] for s in schemas)


@pytest.mark.parametrize("kind", ISTIO_KINDS)
def test_crd_schemas_are_structural_and_never_prune(kind: str):
    """Every node is typed (a structural schema) and every object node keeps fields it does not list, so
    the API server never drops a field of Istio's API that pilot's protos lack."""
    for path, node in schema_nodes(crd_schema(kind)):
        assert "type" in node, f"{kind}{path}: every node needs a type (structural schema)"
        if path and node["type"] == "object" and "properties" in node:  # the root: the API server's own
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, f"{kind}{path} would prune"
    assert crd_schema(kind)["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def corpus_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in CORPUS_FILES
        for i, doc in enumerate(served_documents(path))
        if doc["kind"] in ISTIO_KINDS
    ]


@pytest.mark.skipif(not CORPUS_FILES, reason=f"no Istio corpus at {CORPUS}")
def test_crd_schemas_accept_every_corpus_object():
    objects = corpus_objects()
    assert len(objects) > 50
    for where, obj in objects:
        version = obj["apiVersion"].rpartition("/")[2]
        errors = validate(obj, crd_schema(obj["kind"], version))
        assert not errors, f"{where}: {errors}"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["http"][0]["route"][0].update(weight="ten"), "expected an integer"),
        (lambda s: s["http"][0].update(timeout=5), "expected a string"),
        (lambda s: s["http"][0]["route"][0]["destination"].update(port={"number": -1}), "out of range"),
    ],
)
def test_crd_schema_rejects_wrong_types(mutate: Any, expected: str):
    obj = virtual_service()
    assert validate(obj, crd_schema("VirtualService")) == []
    mutate(obj["spec"])
    errors = validate(obj, crd_schema("VirtualService"))
    assert len(errors) == 1 and expected in errors[0], errors


def virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews"}, "weight": 100}]}],
        },
    }


def test_crd_schema_keeps_fields_pilot_does_not_read():
    """Fields of Istio's API that pilot's protos lack (here made up, at three depths) stay on the
    stored object: the webhook, not the schema, reports the ones pilot cannot serve."""
    obj = virtual_service()
    obj["spec"]["futureField"] = {"a": 1}
    obj["spec"]["http"][0]["futureRouteField"] = True
    obj["spec"]["http"][0]["route"][0]["destination"]["futureDestinationField"] = "x"
    assert validate(obj, crd_schema("VirtualService")) == []


def test_crd_schema_rejects_an_unknown_enum_value():
    rule = {"spec": {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}}
    (error,) = validate(rule, crd_schema("DestinationRule"))
    assert "FASTEST" in error


# -- the deployment ------------------------------------------------------------------------------------------


def test_rbac_grants_reading_exactly_what_the_source_watches():
    watched = {(r.group, r.plural) for r in kube_source.REGISTRY_RESOURCES}
    watched |= {(kinds.KINDS[kind].group, plural) for kind, plural in kube_source.ISTIO_RESOURCES.items()}
    granted = set()
    for rule in find("ClusterRole", "pilot")["rules"]:
        assert rule["verbs"] == ["get", "list", "watch"]
        granted |= {(group, resource) for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted == watched
    (config_rule,) = find("Role", "pilot")["rules"]
    assert config_rule == {
        "apiGroups": [""],
        "resources": [kube_source.CONFIG_MAPS.plural],
        "resourceNames": ["istio"],
        "verbs": ["get", "list", "watch"],
    }
    assert kube_source.MESH_CONFIG_MAP_SELECTOR == "metadata.name=istio"  # what makes resourceNames apply
    account = find("ServiceAccount", "pilot")["metadata"]
    for binding in (find("ClusterRoleBinding", "pilot"), find("RoleBinding", "pilot")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "pilot", "namespace": account["namespace"]}
        ]


def test_deployment_service_and_webhook_agree():
    deployment = find("Deployment", "pilot")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert container["args"][:2] == ["serve", "--kube"]
    assert "--max-connection-age=1800" in container["args"]  # replicas share proxies after a scale-out
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 15014}
    assert "livenessProbe" in container and container["resources"]["requests"]
    assert pod["affinity"]["podAntiAffinity"]
    assert pod["serviceAccountName"] == "pilot"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc-xds": 15010, "https-dns": 15012, "http-monitoring": 15014, "https-webhook": 15017}
    assert f"--xds-tls-port={ports['https-dns']}" in container["args"]
    assert f"--webhook-port={ports['https-webhook']}" in container["args"]
    service = find("Service", "pilot")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert service_ports == {
        "grpc-xds": (15010, 15010),
        "https-dns": (15012, 15012),
        "http-monitoring": (15014, 15014),
        "https-webhook": (443, 15017),
    }
    (hook,) = find("ValidatingWebhookConfiguration")["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": "pilot",
        "namespace": "pilot-system",
        "path": "/validate",
        "port": 443,
    }
    assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
    hooked = set()
    for rule in hook["rules"]:
        assert rule["operations"] == ["CREATE", "UPDATE"]
        hooked |= {(group, resource) for group in rule["apiGroups"] for resource in rule["resources"]}
    assert hooked == {
        (kinds.KINDS[kind].group, plural) for kind, plural in kube_source.ISTIO_RESOURCES.items()
    }
    volume = {v["name"]: v for v in pod["volumes"]}["webhook-tls"]
    mount = {m["name"]: m for m in container["volumeMounts"]}["webhook-tls"]
    assert f"--webhook-cert={mount['mountPath']}/tls.crt" in container["args"]
    certificate = [
        d
        for d in documents(MANIFESTS / "cert-manager" / "webhook-certificate.yaml")
        if d["kind"] == "Certificate"
    ][0]
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    assert "pilot.pilot-system.svc" in certificate["spec"]["dnsNames"]


def test_the_ca_gets_its_secret_and_the_rights_its_kubernetes_writes_need():
    from pilot.sources import kube_root_cert, kube_writes

    pod = find("Deployment", "pilot")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = {m["name"]: m for m in container["volumeMounts"]}["cacerts"]
    assert f"--ca-dir={mount['mountPath']}" in container["args"] and mount["readOnly"]
    assert {v["name"]: v for v in pod["volumes"]}["cacerts"]["secret"]["secretName"] == "cacerts"
    rules = find("ClusterRole", "pilot-ca")["rules"]
    assert {
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["tokenreviews"],
        "verbs": ["create"],
    } in rules
    assert kube_writes.TOKEN_REVIEWS.endswith("authentication.k8s.io/v1/tokenreviews")
    assert {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [kube_root_cert.CONFIG_MAP_NAME],
        "verbs": ["get", "update"],
    } in rules
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]} in rules
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]} in rules
    binding = find("ClusterRoleBinding", "pilot-ca")
    assert binding["roleRef"]["name"] == "pilot-ca"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pilot", "namespace": "pilot-system"}]


def test_availability_pieces():
    pdb = find("PodDisruptionBudget", "pilot")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    hpa = find("HorizontalPodAutoscaler", "pilot")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pilot" and hpa["spec"]["minReplicas"] == 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_mesh_config_map_is_valid_pilot_config():
    path = MANIFESTS / "30-mesh-config.yaml"
    result = parse_text(path.read_text(), origin=str(path))
    assert [str(e) for e in result.errors] == []
    (mesh,) = result.objects
    assert mesh.kind == "MeshConfig" and mesh.namespace == kube_source.DEFAULT_PILOT_NAMESPACE

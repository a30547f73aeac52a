"""cluster_configs/ validated offline: the Ray launcher YAMLs by Ray's own config validation, the
KubeRay manifests by the CRD schemas of KubeRay v1.6.2 (tests/data/kuberay-v1.6.2, read
strictly, as `kubectl apply --validate=strict` does), the core kinds by Kubernetes' own API
models; each check is shown to fail on a misspelled field."""
from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "cluster_configs"
SCHEMAS = Path(__file__).resolve().parent / "data" / "kuberay-v1.6.2"
KUBERAY = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayCronJob": "raycronjobs"}


# -- validators -----------------------------------------------------------------------------

def closed(schema: dict) -> dict:
    """The schema with every object that lists its properties closed to other keys, as the API
    server's strict field validation treats unknown fields (unless the schema keeps them)."""
    schema = dict(schema)
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in schema:
            schema[key] = {k: closed(v) for k, v in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = closed(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [closed(s) for s in schema[key]]
    return schema


def kuberay_errors(doc: dict) -> list[str]:
    import jsonschema

    data = json.load(gzip.open(SCHEMAS / f"{KUBERAY[doc['kind']]}.schema.json.gz"))
    assert doc["apiVersion"] == f"{data['group']}/{data['version']}"
    validator = jsonschema.Draft7Validator(closed(data["openAPIV3Schema"]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def k8s_errors(value, type_name: str, where: str = "") -> list[str]:
    """Check a manifest against the Kubernetes Python client's generated API models: every key
    must be an attribute of its model, every value of the model's declared type."""
    import kubernetes.client as k8s

    if value is None:
        return []
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in k8s_errors(v, m.group(1), f"{where}[{i}]")]
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in k8s_errors(v, m.group(1), f"{where}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}
    if type_name in simple:
        ok = isinstance(value, simple[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping, got {type(value).__name__}"]
    by_json = {v: k for k, v in model.attribute_map.items()}
    errors = []
    for key, v in value.items():
        if key not in by_json:
            errors.append(f"{where}.{key}: not a field of {type_name}")
            continue
        errors += k8s_errors(v, model.openapi_types[by_json[key]], f"{where}.{key}")
    return errors


def launcher_errors(config: dict) -> list[str]:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except (jsonschema.ValidationError, ValueError) as e:
        return [str(e).splitlines()[0]]
    return []


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- the shipped configs ----------------------------------------------------------------------

LAUNCHER = sorted((CONFIGS / "ray-launcher").glob("*.yaml"))
MANIFESTS = sorted((CONFIGS / "kuberay").glob("*.yaml"))


def test_every_target_is_there():
    assert {p.name for p in LAUNCHER} == {"aws.yaml", "gcp.yaml"}
    kinds = {d["kind"] for p in MANIFESTS for d in documents(p)}
    assert kinds == {"RayCluster", "RayJob", "RayCronJob", "CronJob"}
    for folder in ("ray-launcher", "kuberay", "runtime_env", "docker"):
        assert (CONFIGS / folder).is_dir()
    assert (CONFIGS / "README.md").is_file() and (CONFIGS / "docker" / "Dockerfile").is_file()


@pytest.mark.parametrize("path", LAUNCHER, ids=[p.stem for p in LAUNCHER])
def test_launcher_configs_pass_rays_validation_and_a_misspelling_fails(path):
    config = yaml.safe_load(path.read_text())
    assert launcher_errors(config) == []
    assert {t for t, n in config["available_node_types"].items() if n["resources"].get("GPU")} == {"gpu_worker"}
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["max_worker"] = 4
    assert "max_worker" in launcher_errors(bad)[0]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_kubernetes_manifests_are_valid_and_a_misspelling_fails(path):
    for doc in documents(path):
        if doc["kind"] in KUBERAY:
            check, spec_key = kuberay_errors, "spec"
        else:
            check, spec_key = (lambda d: k8s_errors(d, f"V1{d['kind']}")), "spec"
        assert check(doc) == [], path.name
        bad = copy.deepcopy(doc)
        bad[spec_key]["schedul" if "schedule" in bad[spec_key] else "enableInTreeAutoscalling"] = True
        assert check(bad), f"{path.name}: a misspelled field passed"
        deep = json.loads(json.dumps(doc).replace('"resources": {"requests"', '"resources": {"request"', 1))
        assert check(deep), f"{path.name}: a misspelled field inside a pod template passed"


def test_no_credentials_in_any_config():
    """No key material and no credential variable given a value; names in prose are fine."""
    secrets = re.compile(r"AKIA[0-9A-Z]{16}|BEGIN [A-Z ]*PRIVATE KEY|"
                         r"(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SESSION_TOKEN|GOOGLE_APPLICATION_CREDENTIALS|"
                         r"private_key)\W*[:=]", re.I)
    for path in CONFIGS.rglob("*"):
        if path.is_file() and path.suffix != ".md":
            assert not secrets.search(path.read_text()), path
    assert secrets.search("env: {AWS_SECRET_ACCESS_KEY: abc}")  # the check sees a literal


def test_the_validators_read_what_they_check():
    cron = documents(CONFIGS / "kuberay" / "cronjob-submit.yaml")[0]
    wrong = copy.deepcopy(cron)
    wrong["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] = "ray job submit"
    assert any("expected a list" in e for e in k8s_errors(wrong, "V1CronJob"))
    job = documents(CONFIGS / "kuberay" / "rayjob.yaml")[0]
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any("shutdownAfterJobFinishes" in e for e in kuberay_errors(job))

"""The deployment files under infra/: schema-valid, consistent with each other and with the real CLI.

- KubeRay kinds (RayCluster, RayJob, RayCronJob) are validated against the CRDs' openAPIV3Schema in
  ../shared/kuberay-crds (beside the repository), strictly: a field the schema does not know fails, as
  `kubectl apply --validate=strict` would (the API server would silently drop it otherwise). CEL rules
  (x-kubernetes-validations) are not evaluated.
- Core kinds (Namespace, ServiceAccount, Role, RoleBinding, ConfigMap, CronJob) are validated against
  the offline Kubernetes JSON schemas of the `kubernetes-validate` package, strict variant.
- The RayJob template inside the CronJob fallback's ConfigMap and the RayCronJob's jobTemplate are
  validated too, and every entrypoint is parsed by the real `bonito-ray generate` parser and config.
- Policy: no inline credentials anywhere under infra/, the head runs no work, GPUs scale from zero,
  the driver has CPUs to land on and fits no GPU, the vLLM replicas fit in the GPU group.

Each checker returns a list of problems; the last tests feed them broken input to show they can fail.
"""

from __future__ import annotations

import copy
import os
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from bonito_ray import cli
from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import GenerateConfig, load_config

pytestmark = pytest.mark.static  # reads files, runs nothing: counted apart from behaviour tests

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "Dockerfile"
# The CRDs are KubeRay's own files, kept outside the repository; BONITO_RAY_KUBERAY_CRDS points elsewhere.
CRD_DIR = Path(os.environ.get("BONITO_RAY_KUBERAY_CRDS")
               or Path(__file__).resolve().parents[1].parent / "shared" / "kuberay-crds")
KUBERAY_COMMIT = "feeaf72facab4881ba2b179248bb67315634e229"  # the KubeRay sources the tested CRDs come from
CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_raycronjobs.yaml")
# Oldest Kubernetes the manifests claim to support (docs/deploy.md), and the newest schema available.
KUBE_VERSIONS = ("1.30", "latest")
NAMESPACE = "bonito-ray"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
GPU = "nvidia.com/gpu"
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 56k lines of YAML
CREDENTIAL_NAME = re.compile(r"(?i)(ACCESS_KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|API_KEY)")


# ---------------------------------------------------------------------------------------------------
# Loading


class Doc:
    """One Kubernetes object, from a file under infra/k8s or embedded in another object."""

    def __init__(self, where: str, body: dict[str, Any]) -> None:
        self.where = where
        self.body = body

    @property
    def kind(self) -> str:
        return self.body.get("kind", "?")

    @property
    def is_kuberay(self) -> bool:
        return str(self.body.get("apiVersion", "")).startswith("ray.io/")

    def __repr__(self) -> str:
        name = self.body.get("metadata", {}).get("name") or self.body.get("metadata", {}).get("generateName")
        return f"{self.where} {self.kind}/{name}"


def _file_docs() -> list[Doc]:
    docs = []
    for path in sorted(K8S.rglob("*.y*ml")):
        for i, body in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if body is not None:
                docs.append(Doc(f"{path.relative_to(ROOT)}#{i}", body))
    return docs


def _embedded_docs(docs: list[Doc]) -> list[Doc]:
    """Kubernetes objects held as YAML text in ConfigMaps (the CronJob fallback's RayJob template)."""
    found = []
    for doc in docs:
        if doc.kind != "ConfigMap":
            continue
        for key, text in (doc.body.get("data") or {}).items():
            if key.endswith((".yaml", ".yml")):
                for i, body in enumerate(yaml.safe_load_all(text)):
                    if isinstance(body, dict) and "kind" in body:
                        found.append(Doc(f"{doc.where} data[{key}]#{i}", body))
    return found


FILE_DOCS = _file_docs()
EMBEDDED_DOCS = _embedded_docs(FILE_DOCS)
ALL_DOCS = FILE_DOCS + EMBEDDED_DOCS


def _of_kind(*kinds: str) -> list[Doc]:
    return [d for d in ALL_DOCS if d.kind in kinds]


def rayjob_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every RayJob spec: RayJob objects (files and templates) and RayCronJob jobTemplates."""
    specs = [(repr(d), d.body["spec"]) for d in _of_kind("RayJob")]
    specs += [(f"{d!r} jobTemplate", d.body["spec"]["jobTemplate"]) for d in _of_kind("RayCronJob")]
    return specs


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every RayCluster spec: RayCluster objects and the rayClusterSpec of every RayJob spec."""
    specs = [(repr(d), d.body["spec"]) for d in _of_kind("RayCluster")]
    specs += [(f"{where} rayClusterSpec", spec["rayClusterSpec"]) for where, spec in rayjob_specs()
              if "rayClusterSpec" in spec]
    return specs


def _ids(items: list) -> list[str]:
    return [item[0] if isinstance(item, tuple) else repr(item) for item in items]


def pinned_ray_version() -> str:
    match = re.search(r'"ray\[[^\]]*\]==([0-9][0-9a-z.]*)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert match, "pyproject.toml pins no ray version"
    return match.group(1)


def test_the_expected_manifests_are_there():
    kinds = sorted({d.kind for d in FILE_DOCS})
    for kind in ("RayCluster", "RayJob", "RayCronJob", "CronJob", "ConfigMap", "ServiceAccount", "Role",
                 "RoleBinding"):
        assert kind in kinds, f"no {kind} under infra/k8s (found {kinds})"
    assert [d.kind for d in EMBEDDED_DOCS] == ["RayJob"], "the CronJob fallback's ConfigMap holds one RayJob"


# ---------------------------------------------------------------------------------------------------
# Schemas


def _strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 structural schema in which objects accept only their declared fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k not in ("enum", "default", "example") else v for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from the KubeRay CRDs."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=FAST_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_problems(body: dict[str, Any], schema: dict | None = None) -> list[str]:
    """Schema violations of a KubeRay object (or of a fragment, given its ``schema``)."""
    import jsonschema

    if schema is None:
        schema = crd_schemas().get((body.get("apiVersion"), body.get("kind")))
        if schema is None:
            return [f"no CRD schema for {body.get('apiVersion')} {body.get('kind')} in {CRD_DIR}"]
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))]


def core_problems(body: dict[str, Any], version: str) -> list[str]:
    """Schema violations of a core Kubernetes object, from kubernetes-validate's strict schemas."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, latest_version

    try:
        kubernetes_validate.validate(body, latest_version() if version == "latest" else version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path)) or '<root>'}: {err.message}"]
    except SchemaNotFoundError as err:
        return [err.message]
    return []


def _need_crds() -> None:
    if not CRD_DIR.is_dir() or not any(CRD_DIR.glob("*.yaml")):
        pytest.skip(crds_missing_reason())


def crds_missing_reason() -> str:
    """Where the KubeRay CRDs were looked for, where to get them and how to point the tests at them."""
    base = f"https://raw.githubusercontent.com/ray-project/kuberay/{KUBERAY_COMMIT}/ray-operator/config/crd/bases"
    return (f"KubeRay CRDs not found at {CRD_DIR}: download {', '.join(CRD_FILES)} from KubeRay's "
            f"ray-operator/config/crd/bases (the tested copies: commit {KUBERAY_COMMIT[:12]}; any KubeRay release "
            f">= 1.6.0 has all three; "
            f"e.g. curl -LO {base}/{CRD_FILES[0]}) into a folder and set BONITO_RAY_KUBERAY_CRDS to it")


def _need_kubernetes_validate() -> None:
    pytest.importorskip("kubernetes_validate", reason="the offline Kubernetes schemas come from the "
                        "kubernetes-validate package (pip install kubernetes-validate)")


@pytest.mark.parametrize("doc", [d for d in ALL_DOCS if d.is_kuberay], ids=repr)
def test_kuberay_objects_match_the_crds(doc):
    _need_crds()
    assert crd_problems(doc.body) == []


@pytest.mark.parametrize("doc", _of_kind("RayCronJob"), ids=repr)
def test_raycronjob_job_template_is_a_valid_rayjob_spec(doc):
    _need_crds()
    rayjob_spec_schema = crd_schemas()[("ray.io/v1", "RayJob")]["properties"]["spec"]
    assert crd_problems(doc.body["spec"]["jobTemplate"], rayjob_spec_schema) == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("doc", [d for d in ALL_DOCS if not d.is_kuberay], ids=repr)
def test_core_objects_match_the_kubernetes_schemas(doc, version):
    _need_kubernetes_validate()
    assert core_problems(doc.body, version) == []


@pytest.mark.parametrize("doc", ALL_DOCS, ids=repr)
def test_every_object_is_named_and_in_the_namespace(doc):
    meta = doc.body.get("metadata", {})
    name = meta.get("name") or meta.get("generateName", "").rstrip("-")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name or ""), f"bad name {name!r}"
    if doc.kind != "Namespace":
        assert meta.get("namespace") == NAMESPACE
    else:
        assert meta.get("name") == NAMESPACE


# ---------------------------------------------------------------------------------------------------
# Entrypoints against the real CLI


def entrypoint_args(entrypoint: str) -> tuple[str, list[str]]:
    """(script path, arguments) of ``python .../jobs/generate.py ARGS``."""
    tokens = shlex.split(entrypoint)
    for i, token in enumerate(tokens):
        if token.endswith("jobs/generate.py"):
            assert i >= 1 and Path(tokens[i - 1]).name.startswith("python"), f"not run by python: {entrypoint}"
            return token, tokens[i + 1:]
    raise AssertionError(f"no jobs/generate.py in the entrypoint {entrypoint!r}")


def cli_problems(args: list[str]) -> tuple[list[str], GenerateConfig | None]:
    """Whether `bonito-ray generate ARGS` parses and gives a valid config, as cli.main builds it."""
    try:
        parsed = cli.build_parser().parse_args(["generate", *args])
    except SystemExit as exit_:
        return [f"the CLI parser rejects {args} (exit {exit_.code})"], None
    try:
        return [], load_config(None, cli.config_overrides(parsed))
    except ValueError as err:  # ConfigError, UnknownTaskTypeError
        return [f"load_config rejects {args}: {err}"], None


@pytest.mark.parametrize("where,spec", rayjob_specs(), ids=_ids(rayjob_specs()))
def test_entrypoint_flags_are_accepted_by_the_cli(where, spec):
    script, args = entrypoint_args(spec["entrypoint"])
    problems, config = cli_problems(args)
    assert problems == []
    assert config.engine == "vllm" and config.model == "BatsResearch/bonito-v1"
    assert config.input.startswith("s3://") and config.output.startswith("s3://")
    assert "--overwrite" not in args  # an unattended job never deletes a dataset


def docs_commands() -> list[str]:
    """Shell lines of docs/deploy.md's code blocks that run jobs/generate.py (continuations joined)."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = [body for lang, body in re.findall(r"```([\w-]*)\n(.*?)```", text, flags=re.DOTALL)
              if lang in ("", "bash", "sh")]
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line.strip() for line in lines if "jobs/generate.py" in line and not line.lstrip().startswith("#")]


def test_docs_commands_use_real_flags():
    commands = docs_commands()
    assert commands, "docs/deploy.md shows no jobs/generate.py command"
    for command in commands:
        _, args = entrypoint_args(command)
        assert cli_problems(args)[0] == [], command


@pytest.mark.parametrize("where,spec", rayjob_specs(), ids=_ids(rayjob_specs()))
def test_entrypoint_script_is_in_the_image(where, spec):
    script, _ = entrypoint_args(spec["entrypoint"])
    workdir = dockerfile()["workdir"]
    assert script.startswith(workdir + "/"), f"{script} is not under the image's WORKDIR {workdir}"
    relative = script[len(workdir) + 1:]
    assert (ROOT / relative).is_file(), f"{relative} is not in the repository"
    assert relative.split("/")[0] in dockerfile()["copied"], f"the Dockerfile does not copy {relative}"


@pytest.mark.parametrize("where,spec", rayjob_specs(), ids=_ids(rayjob_specs()))
def test_rayjob_driver_and_lifecycle(where, spec):
    assert float(spec.get("entrypointNumCpus", 0)) > 0, "reserve CPUs for the driver (entrypointNumCpus)"
    assert not spec.get("entrypointNumGpus"), "the driver must not hold a GPU"
    assert GPU not in json.loads(spec.get("entrypointResources") or "{}")
    assert spec.get("shutdownAfterJobFinishes") is True
    assert isinstance(spec.get("ttlSecondsAfterFinished"), int)
    assert isinstance(spec.get("backoffLimit"), int)
    assert spec.get("activeDeadlineSeconds", 0) > 0
    assert "rayClusterSpec" in spec


@pytest.mark.parametrize("where,spec", rayjob_specs(), ids=_ids(rayjob_specs()))
def test_runtime_env_keeps_telemetry_off(where, spec):
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    env_vars = runtime_env.get("env_vars", {})
    assert {k: env_vars.get(k) for k in PRIVACY_ENV} == PRIVACY_ENV
    assert not [k for k in env_vars if CREDENTIAL_NAME.search(k)], "credentials in the runtime env"


@pytest.mark.parametrize("where,spec", rayjob_specs(), ids=_ids(rayjob_specs()))
def test_vllm_replicas_fit_the_gpu_group(where, spec):
    _, args = entrypoint_args(spec["entrypoint"])
    _, config = cli_problems(args)
    assert config is not None
    engine_kwargs = dict(config.engine_kwargs)
    try:
        from bonito_ray.engines.vllm import DEFAULT_ENGINE_KWARGS

        engine_kwargs = {**DEFAULT_ENGINE_KWARGS, **engine_kwargs}
    except ImportError:
        pass
    gpus_per_replica = (int(engine_kwargs.get("tensor_parallel_size", 1))
                        * int(engine_kwargs.get("pipeline_parallel_size", 1)))
    capacity = sum(group["maxReplicas"] * _gpu_limit(group) * group.get("numOfHosts", 1)
                   for group in spec["rayClusterSpec"]["workerGroupSpecs"])
    assert config.num_replicas * gpus_per_replica <= capacity, (
        f"{config.num_replicas} replicas x {gpus_per_replica} GPUs do not fit in {capacity} GPUs")


# ---------------------------------------------------------------------------------------------------
# Cluster shape


def _containers(pod_template: dict) -> list[dict]:
    return pod_template.get("spec", {}).get("containers", [])


def _gpu_limit(group: dict) -> int:
    return sum(int(c.get("resources", {}).get("limits", {}).get(GPU, 0)) for c in _containers(group["template"]))


def cluster_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling must be true")
    if spec.get("rayVersion") != pinned_ray_version():
        problems.append(f"rayVersion {spec.get('rayVersion')!r} is not the pinned Ray {pinned_ray_version()}")
    if spec.get("authOptions", {}).get("mode") != "token":
        problems.append("token authentication (authOptions.mode: token) is off")
    head = spec.get("headGroupSpec", {})
    if head.get("rayStartParams", {}).get("num-cpus") != "0":
        problems.append("the head must run no work: rayStartParams num-cpus \"0\"")
    groups = spec.get("workerGroupSpecs", [])
    gpu_groups = [g for g in groups if _gpu_limit(g) > 0]
    cpu_groups = [g for g in groups if _gpu_limit(g) == 0 and g.get("maxReplicas", 0) >= 1]
    if not gpu_groups:
        problems.append(f"no worker group with a {GPU} limit")
    for group in gpu_groups:
        name = group.get("groupName")
        if group.get("minReplicas") != 0:
            problems.append(f"GPU group {name}: minReplicas must be 0 (scale from zero)")
        if group.get("maxReplicas", 0) < 1:
            problems.append(f"GPU group {name}: maxReplicas must be >= 1")
        for c in _containers(group["template"]):
            requested = c.get("resources", {}).get("requests", {}).get(GPU)
            if requested is not None and requested != c.get("resources", {}).get("limits", {}).get(GPU):
                problems.append(f"GPU group {name}: {GPU} requests and limits differ")
    if not cpu_groups:  # with the head at num-cpus 0, a driver asking for CPUs needs a CPU worker
        problems.append("no CPU worker group for the driver (the head has num-cpus 0)")
    for pod in [head.get("template", {})] + [g.get("template", {}) for g in groups]:
        if pod.get("spec", {}).get("serviceAccountName") != "bonito-ray":
            problems.append("every Ray pod must run as the bonito-ray ServiceAccount (storage identity)")
        for c in _containers(pod):
            problems += image_problems(c.get("image", ""))
    return problems


def image_problems(image: str) -> list[str]:
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or not tag:
        return [f"image {image!r} has no tag"]
    if tag == "latest":
        return [f"image {image!r} is tagged latest"]
    return []


@pytest.mark.parametrize("where,spec", cluster_specs(), ids=_ids(cluster_specs()))
def test_cluster_shape(where, spec):
    assert cluster_problems(spec) == []


def test_all_clusters_run_the_same_image():
    images = {c["image"] for _, spec in cluster_specs()
              for pod in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
              for c in _containers(pod)}
    assert len(images) == 1, images


def test_every_container_image_is_pinned():
    images = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("image"), str) and "name" in node:
                images.append(node["image"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for doc in ALL_DOCS:
        walk(doc.body)
    assert images and [p for image in images for p in image_problems(image)] == []


def test_storage_identity_is_workload_identity():
    accounts = {d.body["metadata"]["name"]: d.body for d in _of_kind("ServiceAccount")}
    assert "bonito-ray" in accounts
    role_arn = accounts["bonito-ray"].get("metadata", {}).get("annotations", {}).get(IRSA_ANNOTATION, "")
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role_arn), f"bad IRSA role ARN {role_arn!r}"


def test_scheduler_may_only_create_rayjobs():
    (role,) = [d.body for d in _of_kind("Role")]
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create"]}]
    (binding,) = [d.body for d in _of_kind("RoleBinding")]
    (cronjob,) = [d.body for d in _of_kind("CronJob")]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE} in binding["subjects"]
    # The pod creates exactly the template the ConfigMap holds, mounted where kubectl reads it.
    (configmap,) = [d.body for d in _of_kind("ConfigMap")]
    (container,) = pod["containers"]
    command = container.get("command", []) + container.get("args", [])
    mounts = {v["name"]: m["mountPath"] for m in container["volumeMounts"] for v in pod["volumes"]
              if v["name"] == m["name"] and v.get("configMap", {}).get("name") == configmap["metadata"]["name"]}
    (mount_path,) = mounts.values()
    (key,) = configmap["data"]
    assert command[:2] == ["kubectl", "create"] and f"{mount_path}/{key}" in command
    template = yaml.safe_load(configmap["data"][key])
    assert template["metadata"].get("generateName") and "name" not in template["metadata"]


def test_both_schedules_run_the_same_job():
    (cron,) = _of_kind("RayCronJob")
    (template,) = EMBEDDED_DOCS
    (fallback,) = _of_kind("CronJob")
    assert cron.body["spec"]["jobTemplate"] == template.body["spec"]
    assert cron.body["spec"]["schedule"] == fallback.body["spec"]["schedule"]
    assert cron.body["spec"].get("timeZone") == fallback.body["spec"].get("timeZone")


def test_scheduled_entrypoints_are_incremental():
    for spec in (_of_kind("RayCronJob")[0].body["spec"]["jobTemplate"], EMBEDDED_DOCS[0].body["spec"]):
        _, args = entrypoint_args(spec["entrypoint"])
        problems, config = cli_problems(args)
        assert not problems and config.incremental, spec["entrypoint"]


# ---------------------------------------------------------------------------------------------------
# No inline credentials


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    "AWS session token": re.compile(r"(?i)aws_session_token\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{100,}"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def text_secret_problems(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def object_secret_problems(body: Any) -> list[str]:
    """Credentials written into an object: Secret data, or an env var with a literal credential value."""
    problems = []
    if isinstance(body, dict) and body.get("kind") == "Secret" and (body.get("data") or body.get("stringData")):
        problems.append(f"Secret {body.get('metadata', {}).get('name')} carries data inline")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and "value" in node and CREDENTIAL_NAME.search(node["name"]):
                problems.append(f"env {node['name']} has an inline value (use valueFrom/envFrom)")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return problems


@pytest.mark.parametrize("path", sorted(p for p in INFRA.rglob("*") if p.is_file()),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_inline_credentials_in_infra_files(path):
    assert text_secret_problems(path.read_text(encoding="utf-8", errors="replace")) == []


@pytest.mark.parametrize("doc", ALL_DOCS, ids=repr)
def test_no_inline_credentials_in_objects(doc):
    assert object_secret_problems(doc.body) == []


# ---------------------------------------------------------------------------------------------------
# Dockerfile


@cache
def dockerfile() -> dict[str, Any]:
    """The instructions of infra/Dockerfile that matter here (no build: there is no registry access)."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            lines.append(current.strip())
        current = ""
    args: dict[str, str] = {}
    result: dict[str, Any] = {"from": [], "env": {}, "run": [], "copied": [], "workdir": None, "arg_names": []}
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG":
            name, _, default = rest.strip().partition("=")
            result["arg_names"].append(name)
            if not result["from"]:
                args[name] = default.strip().strip('"')
        elif instruction == "FROM":
            image = rest.split()[0]
            result["from"].append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image))
        elif instruction == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                result["env"][key] = value
        elif instruction == "RUN":
            result["run"].append(rest)
        elif instruction == "WORKDIR":
            result["workdir"] = rest.strip().rstrip("/")
        elif instruction in ("COPY", "ADD"):
            parts = [p for p in rest.split() if not p.startswith("--")]
            result["copied"] += [p.rstrip("/") for p in parts[:-1]]
    return result


def test_dockerfile_base_image_is_ray_llm_pinned_to_our_ray():
    info = dockerfile()
    assert info["from"], "no FROM"
    base = info["from"][0]
    assert "$" not in base, f"unresolved build arg in FROM {base}"
    assert image_problems(base) == []
    repository, _, tag = base.split("@")[0].rpartition(":")
    assert repository in ("rayproject/ray-llm", "docker.io/rayproject/ray-llm"), base
    assert tag.startswith(pinned_ray_version() + "-"), f"{base} is not Ray {pinned_ray_version()}"


def test_dockerfile_turns_telemetry_off():
    assert {k: dockerfile()["env"].get(k) for k in PRIVACY_ENV} == PRIVACY_ENV


def test_dockerfile_installs_this_package_with_the_vllm_and_card_extras():
    runs = " ".join(dockerfile()["run"])
    assert re.search(r"pip install .*['\"]?/app\[vllm,card\]", runs), runs  # card: the dataset card's plots
    for source in dockerfile()["copied"]:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    for needed in ("pyproject.toml", "README.md", "bonito_ray", "jobs"):  # README: pyproject's readme
        assert needed in dockerfile()["copied"]


def test_dockerfile_holds_no_credentials():
    names = list(dockerfile()["env"]) + dockerfile()["arg_names"]
    assert [n for n in names if CREDENTIAL_NAME.search(n)] == []


# ---------------------------------------------------------------------------------------------------
# The checkers can fail


def _first(kind: str) -> dict:
    return copy.deepcopy(_of_kind(kind)[0].body)


def test_checkers_reject_broken_kuberay_objects():
    _need_crds()
    rayjob = _first("RayJob")
    rayjob["spec"]["entrypointNumCPUs"] = 1  # misspelt field
    rayjob["spec"]["backoffLimit"] = "none"  # wrong type
    problems = crd_problems(rayjob)
    assert any("entrypointNumCPUs" in p for p in problems) and any("backoffLimit" in p for p in problems)
    cluster = _first("RayCluster")
    cluster["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resourcez"] = {}
    assert any("resourcez" in p for p in crd_problems(cluster))


def test_checkers_reject_broken_core_objects():
    _need_kubernetes_validate()
    cronjob = _first("CronJob")
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicee"] = "Always"
    assert core_problems(cronjob, KUBE_VERSIONS[0])
    role = _first("Role")
    role["rules"][0]["verbs"] = "create"  # a string, not a list
    assert core_problems(role, KUBE_VERSIONS[0])


def test_checkers_reject_a_bad_cluster_shape():
    spec = copy.deepcopy(cluster_specs()[0][1])
    spec["headGroupSpec"]["rayStartParams"].pop("num-cpus")
    gpu_group = next(g for g in spec["workerGroupSpecs"] if _gpu_limit(g))
    gpu_group["minReplicas"] = 1
    spec["workerGroupSpecs"] = [gpu_group]
    problems = " | ".join(cluster_problems(spec))
    assert "num-cpus" in problems and "minReplicas" in problems and "CPU worker group" in problems
    gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"].pop(GPU)
    assert any(GPU in p for p in cluster_problems(spec))


def test_checkers_reject_invented_flags_and_bad_values():
    _, args = entrypoint_args(rayjob_specs()[0][1]["entrypoint"])
    assert cli_problems(args + ["--no-such-flag"])[0]
    assert cli_problems(args + ["--task-types", "no-such-task"])[0]
    assert cli_problems(args + ["--engine-kwargs", "[1, 2]"])[0]


def test_checkers_find_inline_credentials():
    fake_key_id = "AKIA" + "ABCDEFGHIJKLMNOP"  # built here so that this file holds no key-shaped string
    fake_secret = "aws_secret_access_key = " + "a1B2" * 10
    assert text_secret_problems(f"key: {fake_key_id}\n{fake_secret}\n") == ["AWS access key id",
                                                                            "AWS secret access key"]
    rayjob = _first("RayJob")
    rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"})
    assert object_secret_problems(rayjob)
    assert object_secret_problems({"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}})


def test_dockerfile_checks_can_fail(tmp_path, monkeypatch):
    broken = tmp_path / "Dockerfile"
    broken.write_text("ARG BASE=rayproject/ray-llm:latest\nFROM ${BASE}\nENV AWS_SECRET_ACCESS_KEY=x\n")
    monkeypatch.setattr(sys.modules[__name__], "DOCKERFILE", broken)
    dockerfile.cache_clear()
    try:
        info = dockerfile()
        assert image_problems(info["from"][0]) == ["image 'rayproject/ray-llm:latest' is tagged latest"]
        assert "AWS_SECRET_ACCESS_KEY" in info["env"] and not info["workdir"]
    finally:
        dockerfile.cache_clear()


def test_without_the_crds_the_skip_says_where_to_get_them_and_how_to_point_at_them(tmp_path):
    empty = tmp_path / "no-crds"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider",
         f"{Path(__file__)}::test_raycronjob_job_template_is_a_valid_rayjob_spec"],
        env={**os.environ, "BONITO_RAY_KUBERAY_CRDS": str(empty)}, cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0 and " skipped" in done.stdout, done.stdout[-2000:]
    reason = " ".join(done.stdout.split())  # pytest wraps long reasons
    assert f"KubeRay CRDs not found at {empty}" in reason
    assert f"raw.githubusercontent.com/ray-project/kuberay/{KUBERAY_COMMIT}/ray-operator/config/crd/bases" in reason
    assert "BONITO_RAY_KUBERAY_CRDS" in reason and all(name in reason for name in CRD_FILES)

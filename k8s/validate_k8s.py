#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests in k8s/ against the app's spin.toml.

Run through `scripts/validate-k8s`, which provides the dependencies (k8s/requirements.txt) and
`kubectl` (for `kubectl kustomize`). No cluster is contacted. Which route serves a path (probe
paths, the sweep URL) and the route table itself come from `edge-host routes --json`, so the
answer is the host's own precedence, not a second implementation of it; the host binary is
target/debug/edge-host (scripts/test builds it first), `$EDGE_HOST_BIN` or `--edge-host`. Usage:

    validate_k8s.py [--repo ROOT] [--edge-host BIN]   validate ROOT/k8s, exit 1 on any problem
    validate_k8s.py gen-migrations --repo ROOT --out DIR
                                                 write the migrations kustomization to DIR

What is checked, for the base and every overlay in k8s/overlays/:
  * every YAML file under k8s/ parses (duplicate keys are errors);
  * every rendered object validates against its schema: Kubernetes built-in kinds with the
    schemas `kubernetes-validate` ships (strict: unknown fields are errors), SpinApp,
    SpinAppExecutor and ScaledObject with the CRD schemas kept in k8s/schemas/;
  * the workloads (SpinApps, and Deployments that run `edge-host up` as k8s/overlays/edge-host
    does) agree with spin.toml: components exist, every triggered component is deployed, a
    Redis-triggered component runs in exactly one workload with a fixed replica count, every
    variable spin.toml requires is bound (`SPIN_VARIABLE_*` for edge-host), no binding names an
    undeclared variable, secret variables come from Secrets only, probe paths are routed to a
    deployed component;
  * an edge-host Deployment's flags agree with its pod: the grace period is longer than
    --shutdown-delay + --shutdown-timeout, probes and a Service reach the --listen port, the
    container port named `metrics` is --metrics-listen's, the pods carry the PodMonitor's label,
    and --from is where the Containerfile puts the packaged spin.toml;
  * every secretKeyRef / loadFromSecret names a Secret and key defined in k8s/secret.example.yaml,
    every configMapKeyRef a ConfigMap and key in the render;
  * the Ingress sends every public route to the workload serving it, on a port of its Service
    (the operator's port 80 for a SpinApp), and no /internal/ route at all; autoscalers target
    autoscaled SpinApps or edge-host Deployments that leave `replicas` to them;
  * the migration Job runs scripts/migrate with exactly the repository's migrations/*.sql;
  * the sweep CronJob calls a route that a workload serves, with a token bound to that workload;
  * k8s/monitoring/: every Grafana dashboard JSON parses and every panel's PromQL names only
    metrics edge-host exports (`edge-host metrics`), and the PodMonitor scrapes the path and
    port name edge-host's `--metrics-listen` serves (`/metrics`, container port `metrics`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "lib"))
import edge_host  # noqa: E402  (scripts/lib is not a package on sys.path by default)
from migrations_kustomization import (MIGRATE_SCRIPT_CONFIGMAP, MIGRATIONS_CONFIGMAP, MigrationsError,
                                      write_migrations_kustomization)

# The Kubernetes version whose built-in schemas the manifests must satisfy. SpinKube's own
# support matrix starts well below it; nothing used here is newer than autoscaling/v2 and
# batch/v1 CronJob (both GA since 1.23 / 1.21).
KUBERNETES_VERSION = "1.31"

# spin-operator creates, per SpinApp, a Deployment and a ClusterIP Service with the SpinApp's
# name; the Service listens on this port (internal/controller/service.go: DefaultHTTPPort).
SPINAPP_SERVICE_PORT = 80

CRD_SCHEMAS = {
    ("core.spinkube.dev/v1alpha1", "SpinApp"): "spinapp.core.spinkube.dev.v1alpha1.yaml",
    ("core.spinkube.dev/v1alpha1", "SpinAppExecutor"): "spinappexecutor.core.spinkube.dev.v1alpha1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh.v1alpha1.yaml",
}

EXAMPLE_SECRETS_FILE = "secret.example.yaml"
PLACEHOLDER = "REPLACE_ME"


class ValidationProblem(Exception):
    """A problem that stops one part of the validation (the rest still runs)."""


# --------------------------------------------------------------------------------------------
# YAML


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's when available) that rejects duplicate mapping keys, which PyYAML
    silently lets the last one win."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = key_node
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml_documents(text: str) -> list[Any]:
    """All non-empty documents of a YAML stream; raises yaml.YAMLError on any defect."""
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc is not None]


# --------------------------------------------------------------------------------------------
# spin.toml


@dataclass
class HttpRoute:
    route: str
    component: str


@dataclass
class SpinVariable:
    name: str
    required: bool
    secret: bool
    has_default: bool

    @property
    def must_be_bound(self) -> bool:
        """Spin refuses to start when such a variable has no value."""
        return self.required or not self.has_default


@dataclass
class SpinManifest:
    path: Path
    host_binary: Path
    app_name: str
    components: set[str]
    http_routes: list[HttpRoute]  # public routes, in the host's matching order
    redis_components: set[str]
    redis_channels: list[str]
    variables: dict[str, SpinVariable]
    _resolved: dict[str, HttpRoute | None] = field(default_factory=dict)

    def routes_of(self, components: set[str]) -> list[HttpRoute]:
        return [r for r in self.http_routes if r.component in components]

    def route_for_path(self, path: str) -> HttpRoute | None:
        """The route edge-host picks for `path`, or None (404), asked of the host once per path."""
        if path not in self._resolved:
            try:
                match = edge_host.resolve_paths(self.host_binary, self.path, [path])[path]
            except edge_host.EdgeHostError as err:
                raise ValidationProblem(str(err)) from err
            self._resolved[path] = HttpRoute(match.route, match.component) if match.route else None
        return self._resolved[path]


def load_spin_manifest(path: Path, host_binary: Path | None = None) -> SpinManifest:
    """spin.toml's components, variables and Redis triggers (read here) and its HTTP routes
    (from `edge-host routes`, which also rejects a manifest the host would not run)."""
    host_binary = host_binary or edge_host.default_binary()
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValidationProblem(f"{path}: cannot read Spin manifest: {err}") from err
    app_name = doc.get("application", {}).get("name")
    if not isinstance(app_name, str) or not app_name:
        raise ValidationProblem(f"{path}: [application] name is missing")
    components = set(doc.get("component", {}).keys())
    triggers = doc.get("trigger", {})
    for trigger in triggers.get("http", []):
        if not isinstance(trigger.get("component"), str):
            raise ValidationProblem(f"{path}: an HTTP trigger has no component id (inline components are not supported here)")
    # Private routes (`route = { private = true }`, reachable only through local service
    # chaining) are not in the host's public table, so no Ingress check sees them.
    try:
        http_routes = [HttpRoute(route, component) for route, component in edge_host.route_table(host_binary, path)]
    except edge_host.EdgeHostError as err:
        raise ValidationProblem(str(err)) from err
    redis_components, redis_channels = set(), []
    for trigger in triggers.get("redis", []):
        component = trigger.get("component")
        if not isinstance(component, str):
            raise ValidationProblem(f"{path}: a Redis trigger has no component id")
        redis_components.add(component)
        redis_channels.append(str(trigger.get("channel", "")))
    variables = {}
    for name, spec in doc.get("variables", {}).items():
        spec = spec if isinstance(spec, dict) else {}
        variables[name] = SpinVariable(
            name=name,
            required=bool(spec.get("required", False)),
            secret=bool(spec.get("secret", False)),
            has_default="default" in spec,
        )
    return SpinManifest(path, host_binary, app_name, components, http_routes, redis_components, redis_channels,
                        variables)


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def route_sample_paths(route: str) -> list[str]:
    """Concrete request paths a route serves, used to test reachability through an Ingress."""
    wildcard = route.endswith("/...")
    base = route[: -len("/...")] if wildcard else route
    concrete = "/" + "/".join("sample" if s.startswith(":") else s for s in _segments(base))
    if not wildcard:
        return [concrete]
    return [concrete, concrete.rstrip("/") + "/sample"]


def ingress_path_matches(path: str, path_type: str, request: str) -> bool:
    """Kubernetes Ingress matching: Exact is string equality, Prefix is element-wise."""
    if path_type == "Exact":
        return path == request
    prefix = _segments(path)
    return _segments(request)[: len(prefix)] == prefix


# --------------------------------------------------------------------------------------------
# Rendering


def kustomize_build(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ValidationProblem("kubectl is not on PATH: it is needed for `kubectl kustomize` "
                                "(Debian/Ubuntu: the kubectl or kubernetes-client package)")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ValidationProblem(f"kubectl kustomize {directory.name} failed: {result.stderr.strip()}")
    try:
        docs = load_yaml_documents(result.stdout)
    except yaml.YAMLError as err:
        raise ValidationProblem(f"kustomize output for {directory.name} does not parse: {err}") from err
    return docs


# --------------------------------------------------------------------------------------------
# Schemas


class SchemaValidator:
    """Validates objects: built-in kinds via kubernetes-validate, CRDs via k8s/schemas/."""

    def __init__(self, schema_dir: Path):
        import jsonschema  # imported here so `gen-migrations` needs no third-party packages

        import kubernetes_validate.utils

        self._jsonschema = jsonschema
        # kubernetes-validate re-reads its (large) schema files for every object; they never
        # change during a run, so read each once.
        if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
            kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
                kubernetes_validate.utils.schema_contents)
        self._crd_validators = {}
        for key, filename in CRD_SCHEMAS.items():
            schema = yaml.safe_load((schema_dir / filename).read_text())
            close_structural_schema(schema)
            self._crd_validators[key] = jsonschema.Draft7Validator(schema)

    def problems(self, obj: dict) -> list[str]:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if "status" in obj:
            return ["sets `status`, which belongs to the controller"]
        if key in self._crd_validators:
            return [f"{_json_path(e.absolute_path)}: {e.message}"
                    for e in self._crd_validators[key].iter_errors(obj)]
        import kubernetes_validate

        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return [f"no schema for {key[1]} {key[0]}: add its CRD schema to k8s/schemas/"]
        except kubernetes_validate.ValidationError as err:
            return [f"{_json_path(err.absolute_path)}: {err.message}"]
        return []


def close_structural_schema(schema: Any) -> None:
    """Make unknown fields errors, as the API server's strict field validation does.

    An object schema with `properties` and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields` prunes (and, strictly, rejects) other fields.
    """
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            close_structural_schema(value)
    elif isinstance(schema, list):
        for value in schema:
            close_structural_schema(value)


def _json_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out or "."


# --------------------------------------------------------------------------------------------
# Cross-reference checks


@dataclass
class Render:
    """One rendered kustomization and the problems found in it."""

    name: str
    objects: list[dict]
    problems: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict | None:
        return next((o for o in self.of_kind(kind) if _name(o) == name), None)

    def problem(self, obj: dict | None, message: str) -> None:
        where = f"{obj.get('kind')}/{_name(obj)}" if obj else "-"
        self.problems.append(f"[{self.name}] {where}: {message}")


def _name(obj: dict | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("name", "?")


def walk(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, node) pair below `value`, depth first."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, path + (index,))


def load_example_secrets(path: Path) -> dict[str, dict[str, str]]:
    """Secret name -> {key: value} from the example Secrets file."""
    try:
        docs = load_yaml_documents(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValidationProblem(f"{path}: {err}") from err
    secrets = {}
    for doc in docs:
        if doc.get("kind") != "Secret":
            raise ValidationProblem(f"{path}: holds a {doc.get('kind')}, only Secrets belong there")
        data = dict(doc.get("stringData") or {})
        data.update(doc.get("data") or {})
        secrets[_name(doc)] = {str(k): str(v) for k, v in data.items()}
    return secrets


# --------------------------------------------------------------------------------------------
# Workloads: what runs the app's components


# The pod label k8s/monitoring/podmonitor-edge-host.yaml selects, carried by every pod that
# runs edge-host (and by no SpinKube pod, which runs Spin and has no metrics listener).
EDGE_HOST_POD_LABEL = ("app.kubernetes.io/runtime", "edge-host")
# The image that runs edge-host (k8s/overlays/edge-host) is built from this file.
CONTAINERFILE = "Containerfile"
# Kubernetes' default terminationGracePeriodSeconds, and edge-host's defaults for the drain.
DEFAULT_GRACE_S = 30
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
DEFAULT_LISTEN = "127.0.0.1:3000"


@dataclass
class Workload:
    """Pods that run some of the app's components: a SpinApp (spin-operator makes its
    Deployment and a Service of the same name) or a Deployment whose container runs
    `edge-host up` (k8s/overlays/edge-host)."""

    obj: dict
    components: set[str]
    # Variable bindings as {"name": spin variable, "valueFrom" | "value": ...}.
    bindings: list[dict]
    # Probe kind ("liveness", "readiness", "startup") -> (path, port or None).
    probes: dict[str, tuple[str, Any]]
    # `edge-host up` flags (name -> values) for an edge-host Deployment; None for a SpinApp.
    flags: dict[str, list[str]] | None = None

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "?")

    @property
    def name(self) -> str:
        return _name(self.obj)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def pod_labels(self) -> dict:
        if self.flags is None:
            return self.obj.get("spec", {}).get("podLabels") or {}
        return (self.obj.get("spec", {}).get("template", {}).get("metadata") or {}).get("labels") or {}

    @property
    def container(self) -> dict:
        return edge_host_container(self.obj) or {}


def edge_host_container(obj: dict) -> dict | None:
    """The container of a Deployment that runs `edge-host up` (the image's entrypoint is
    edge-host, so its args start with `up`), or None."""
    if obj.get("kind") != "Deployment":
        return None
    for container in _pod_spec(obj).get("containers", []):
        args = [str(a) for a in container.get("command", []) + container.get("args", [])]
        if args[:1] == ["up"] or args[1:2] == ["up"] and args[0].endswith("edge-host"):
            return container
    return None


# `edge-host up` options that take a value, by every name they go by.
EDGE_HOST_VALUE_FLAGS = {"-f": "--from", "--from": "--from", "-c": "--component-id",
                         "--component-id": "--component-id", "--listen": "--listen",
                         "--metrics-listen": "--metrics-listen", "--shutdown-delay": "--shutdown-delay",
                         "--shutdown-timeout": "--shutdown-timeout", "--variable": "--variable",
                         "--runtime-config-file": "--runtime-config-file"}


def edge_host_flags(args: list[str]) -> dict[str, list[str]]:
    """`--name=value`, `--name value` and `-c value` pairs of an `edge-host up` command line,
    by canonical name; flags this check does not need are kept under their own name."""
    flags: dict[str, list[str]] = {}
    args = args[args.index("up") + 1:] if "up" in args else args
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, value = arg.partition("=")
        canonical = EDGE_HOST_VALUE_FLAGS.get(name)
        if canonical and not eq and index + 1 < len(args):
            value, index = args[index + 1], index + 1
        flags.setdefault(canonical or name, []).append(value)
        index += 1
    return flags


def parse_duration_s(text: str) -> float | None:
    """edge-host's duration syntax (seconds, or a number with s, ms, us or ns) in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|ms|us|ns)?", text.strip())
    if not match:
        return None
    scale = {"s": 1.0, None: 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[match.group(2)]
    return float(match.group(1)) * scale


def listen_port(address: str) -> int | None:
    host, _, port = address.rpartition(":")
    return int(port) if host and port.isdigit() else None


def container_port(container: dict, port: Any) -> int | None:
    """A probe's or Service's port (number or container-port name) as a number."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared.get("containerPort")
    return int(port) if isinstance(port, str) and port.isdigit() else None


def workloads(render: Render, manifest: SpinManifest) -> list[Workload]:
    found = []
    for app in render.of_kind("SpinApp"):
        spec = app.get("spec", {})
        listed = spec.get("components")
        probes = {kind: ((probe.get("httpGet") or {}).get("path", ""), None)
                  for kind, probe in (spec.get("checks") or {}).items() if probe is not None}
        found.append(Workload(app, set(listed) if listed else set(manifest.components),
                              list(spec.get("variables") or []), probes))
    for deployment in render.of_kind("Deployment"):
        container = edge_host_container(deployment)
        if container is None:
            continue
        flags = edge_host_flags([str(a) for a in container.get("command", []) + container.get("args", [])])
        selected = flags.get("--component-id")
        bindings = []
        for env in container.get("env", []):
            name = str(env.get("name", ""))
            if name.startswith("SPIN_VARIABLE_"):
                bindings.append({"name": name.removeprefix("SPIN_VARIABLE_").lower(),
                                 **{k: v for k, v in env.items() if k != "name"}})
        for assignment in flags.get("--variable", []):
            bindings.append({"name": assignment.partition("=")[0], "value": assignment.partition("=")[2]})
        probes = {}
        for kind in ("liveness", "readiness", "startup"):
            probe = container.get(f"{kind}Probe")
            if probe is not None:
                get = probe.get("httpGet") or {}
                probes[kind] = (get.get("path", ""), get.get("port"))
        found.append(Workload(deployment, set(selected) if selected else set(manifest.components),
                              bindings, probes, flags))
    return found


def services_of(render: Render, workload: Workload) -> dict[str, dict]:
    """Service name -> Service for the Services in front of a workload: for a SpinApp the one
    spin-operator makes, for an edge-host Deployment those selecting its pods."""
    if workload.flags is None:
        return {workload.name: {"spec": {"ports": [{"port": SPINAPP_SERVICE_PORT}]}}}
    labels = workload.pod_labels
    return {_name(s): s for s in render.of_kind("Service")
            if (selector := s.get("spec", {}).get("selector")) and selector.items() <= labels.items()}


def service_ports(render: Render, workload: Workload) -> dict[str, set[int]]:
    """Service name -> the ports on it that reach the workload's HTTP listener."""
    out: dict[str, set[int]] = {}
    listen = None if workload.flags is None else listen_port((workload.flags.get("--listen") or [DEFAULT_LISTEN])[-1])
    for name, service in services_of(render, workload).items():
        ports = set()
        for port in service.get("spec", {}).get("ports", []):
            if workload.flags is None:
                ports.add(port.get("port"))
            elif container_port(workload.container, port.get("targetPort", port.get("port"))) == listen:
                ports.add(port.get("port"))
        out[name] = ports
    return out


def workload_for_service(render: Render, loads: list[Workload], service: str) -> Workload | None:
    return next((w for w in loads if service in services_of(render, w)), None)


def autoscalers_of(render: Render, name: str) -> list[dict]:
    return [s for s in render.of_kind("HorizontalPodAutoscaler") + render.of_kind("ScaledObject")
            if s.get("spec", {}).get("scaleTargetRef", {}).get("name") == name]


def has_fixed_replicas(render: Render, workload: Workload) -> bool:
    spec = workload.obj.get("spec", {})
    if workload.flags is None:
        return not spec.get("enableAutoscaling") and "replicas" in spec
    return "replicas" in spec and not autoscalers_of(render, workload.name)


def containerfile_app_dir(repo: Path) -> tuple[str | None, list[str]]:
    """Where Containerfile puts the packaged app (target/package/), and its problems."""
    path = repo / CONTAINERFILE
    if not path.is_file():
        return None, [f"{CONTAINERFILE} is missing: k8s/overlays/edge-host runs the image it builds"]
    problems, app_dir = [], None
    copies = re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", path.read_text(), flags=re.MULTILINE)
    sources = {source.rstrip("/"): dest for source, dest in copies}
    if "target/release/edge-host" not in sources:
        problems.append(f"{CONTAINERFILE}: does not COPY target/release/edge-host (the release host)")
    if "target/package" in sources:
        app_dir = sources["target/package"].rstrip("/") + "/"
    else:
        problems.append(f"{CONTAINERFILE}: does not COPY target/package/ (what scripts/package lays out)")
    if not re.search(r'^ENTRYPOINT\s+\["[^"]*edge-host"\]', path.read_text(), flags=re.MULTILINE):
        problems.append(f"{CONTAINERFILE}: ENTRYPOINT is not edge-host, so the Deployments' `up` args would not run it")
    return app_dir, problems


def check_edge_host_deployments(render: Render, manifest: SpinManifest, repo: Path) -> None:
    """What only a Deployment running edge-host has: its flags against its pod spec (ports,
    probes, grace period, the image's layout, the PodMonitor's label)."""
    loads = [w for w in workloads(render, manifest) if w.flags is not None]
    if not loads:
        return
    app_dir, problems = containerfile_app_dir(repo)
    for problem in problems:
        render.problem(None, problem)
    for load in loads:
        flags, container, obj = load.flags, load.container, load.obj
        source = (flags.get("--from") or ["spin.toml"])[-1]
        if app_dir is not None and source != app_dir + "spin.toml":
            render.problem(obj, f"--from {source}, but {CONTAINERFILE} puts the app's spin.toml at {app_dir}spin.toml")
        address = (flags.get("--listen") or [DEFAULT_LISTEN])[-1]
        port = listen_port(address)
        if port is None or address.startswith(("127.", "[::1]", "localhost")):
            render.problem(obj, f"--listen {address}: the kubelet and Services cannot reach a loopback listener")
        declared = {p.get("containerPort") for p in container.get("ports", [])}
        if port is not None and port not in declared:
            render.problem(obj, f"--listen port {port} is not a container port ({sorted(map(str, declared))})")
        for kind, (path, probe_port) in load.probes.items():
            if container_port(container, probe_port) != port:
                render.problem(obj, f"{kind} probe port {probe_port!r} is not the --listen port {port}")
        metrics = flags.get("--metrics-listen")
        metrics_port = listen_port(metrics[-1]) if metrics else None
        if metrics_port is None:
            render.problem(obj, "no --metrics-listen: the pods cannot be scraped (k8s/monitoring/)")
        elif container_port(container, METRICS_PORT_NAME) != metrics_port:
            render.problem(obj, f"--metrics-listen port {metrics_port} is not the container port named "
                                f"{METRICS_PORT_NAME!r}, which the PodMonitor scrapes")
        annotations = (obj.get("spec", {}).get("template", {}).get("metadata") or {}).get("annotations") or {}
        scraped = annotations.get("prometheus.io/port")
        if metrics_port is not None and scraped is not None and str(scraped) != str(metrics_port):
            render.problem(obj, f"annotation prometheus.io/port {scraped} is not the "
                                f"--metrics-listen port {metrics_port}")
        key, value = EDGE_HOST_POD_LABEL
        if load.pod_labels.get(key) != value:
            render.problem(obj, f"pods lack the label {key}: {value}, which the PodMonitor selects")
        delay = parse_duration_s((flags.get("--shutdown-delay") or ["0s"])[-1])
        timeout = parse_duration_s((flags.get("--shutdown-timeout") or [f"{DEFAULT_SHUTDOWN_TIMEOUT_S}s"])[-1])
        grace = _pod_spec(obj).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        if delay is None or timeout is None:
            render.problem(obj, "--shutdown-delay / --shutdown-timeout is not a duration")
        elif grace <= delay + timeout:
            render.problem(obj, f"terminationGracePeriodSeconds {grace} is not more than --shutdown-delay + "
                                f"--shutdown-timeout ({delay:g} s + {timeout:g} s): the kubelet would kill "
                                "the host in the middle of its drain")
        if not any(service_ports(render, load).values()):
            render.problem(obj, f"no Service in the render reaches its --listen port {port}")


def check_render(render: Render, manifest: SpinManifest, secrets: dict[str, dict[str, str]],
                 repo: Path, is_base: bool) -> None:
    check_references(render, secrets)
    check_workloads(render, manifest, is_base)
    check_edge_host_deployments(render, manifest, repo)
    check_ingress(render, manifest)
    check_autoscaling(render, manifest)
    check_migration_job(render, manifest, repo, secrets)
    check_sweep_cronjob(render, manifest)
    check_selectors(render)
    check_shared_bindings(render, manifest)
    check_redis_notifications(render, manifest)
    check_redis_memory(render)
    if not is_base:
        check_in_cluster_hosts(render)
        namespaces = {o.get("metadata", {}).get("namespace") for o in render.objects
                      if o.get("kind") != "Namespace"}
        if len(namespaces) != 1 or None in namespaces:
            render.problem(None, f"objects are spread over namespaces {sorted(map(str, namespaces))}; "
                                 "an overlay must put everything in one namespace")


def check_references(render: Render, secrets: dict[str, dict[str, str]]) -> None:
    configmaps = {_name(cm): cm.get("data") or {} for cm in render.of_kind("ConfigMap")}
    for obj in render.objects:
        for path, node in walk(obj):
            if not isinstance(node, dict):
                continue
            if "secretKeyRef" in node and isinstance(node["secretKeyRef"], dict):
                ref = node["secretKeyRef"]
                name, key = ref.get("name"), ref.get("key")
                if name not in secrets:
                    render.problem(obj, f"{_json_path(path)}.secretKeyRef: Secret {name!r} is not in "
                                        f"k8s/{EXAMPLE_SECRETS_FILE}")
                elif key not in secrets[name]:
                    render.problem(obj, f"{_json_path(path)}.secretKeyRef: Secret {name!r} has no key "
                                        f"{key!r} in k8s/{EXAMPLE_SECRETS_FILE} (keys: {sorted(secrets[name])})")
            if "configMapKeyRef" in node and isinstance(node["configMapKeyRef"], dict):
                ref = node["configMapKeyRef"]
                name, key = ref.get("name"), ref.get("key")
                if name not in configmaps:
                    render.problem(obj, f"{_json_path(path)}.configMapKeyRef: no ConfigMap {name!r} in the render")
                elif key not in configmaps[name] and not ref.get("optional"):
                    render.problem(obj, f"{_json_path(path)}.configMapKeyRef: ConfigMap {name!r} has no key {key!r}")
            if "configMap" in node and isinstance(node["configMap"], dict) and "name" in node["configMap"]:
                if node["configMap"]["name"] not in configmaps:
                    render.problem(obj, f"{_json_path(path)}.configMap: no ConfigMap {node['configMap']['name']!r} in the render")
            if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
                if node["secret"]["secretName"] not in secrets:
                    render.problem(obj, f"{_json_path(path)}.secret: Secret {node['secret']['secretName']!r} "
                                        f"is not in k8s/{EXAMPLE_SECRETS_FILE}")
    for app in render.of_kind("SpinApp"):
        secret = app.get("spec", {}).get("runtimeConfig", {}).get("loadFromSecret")
        if secret is not None and "runtime-config.toml" not in secrets.get(secret, {}):
            render.problem(app, f"runtimeConfig.loadFromSecret: Secret {secret!r} with key runtime-config.toml "
                                f"is not in k8s/{EXAMPLE_SECRETS_FILE}")


def check_workloads(render: Render, manifest: SpinManifest, is_base: bool) -> None:
    loads = workloads(render, manifest)
    if not loads:
        render.problem(None, "no SpinApp and no Deployment running edge-host")
        return
    apps = render.of_kind("SpinApp")
    executors = {_name(e) for e in render.of_kind("SpinAppExecutor")}
    for kind, images in (("SpinApps", {a.get("spec", {}).get("image") for a in apps}),
                         ("edge-host Deployments", {w.container.get("image") for w in loads if w.flags is not None})):
        if len(images) > 1:
            render.problem(None, f"the {kind} run different images {sorted(map(str, images))}; they are one app")
        if is_base and kind == "SpinApps":
            for image in images:
                repository = re.sub(r"(@sha256:[0-9a-f]+|:[\w][\w.-]*)$", "", str(image))
                if repository.rsplit("/", 1)[-1] != manifest.app_name:
                    render.problem(None, f"image {image!r} should be named after spin.toml's application "
                                         f"{manifest.app_name!r} (…/{manifest.app_name}:TAG)")
    runs: dict[str, list[Workload]] = {}
    for load in loads:
        spec = load.obj.get("spec", {})
        if load.flags is None:
            if spec.get("executor") not in executors:
                render.problem(load.obj, f"executor {spec.get('executor')!r} is not a SpinAppExecutor in the render")
            if spec.get("enableAutoscaling") and "replicas" in spec:
                render.problem(load.obj, "sets replicas together with enableAutoscaling (the operator rejects that)")
            listed = set(spec.get("components") or [])
        else:
            listed = set(load.flags.get("--component-id") or [])
        unknown = listed - manifest.components
        if unknown:
            render.problem(load.obj, f"components {sorted(unknown)} are not in spin.toml")
        for component in load.components & manifest.components:
            runs.setdefault(component, []).append(load)
        check_variables(render, load, manifest)
        check_probes(render, load, manifest)
    triggered = {r.component for r in manifest.http_routes} | manifest.redis_components
    for component in sorted(triggered - set(runs)):
        render.problem(None, f"component {component!r} has a trigger in spin.toml but no SpinApp "
                             "or edge-host Deployment runs it")
    for component in sorted(manifest.redis_components):
        holders = runs.get(component, [])
        if len(holders) > 1:
            render.problem(None, f"Redis-triggered component {component!r} runs in "
                                 f"{sorted(h.label for h in holders)}: each would subscribe; it must run "
                                 "in exactly one of them")
        for holder in holders:
            if not has_fixed_replicas(render, holder):
                render.problem(holder.obj, f"runs Redis-triggered {component!r}: give it a fixed `replicas` "
                                           "and no autoscaling, so the subscriber count is deliberate")


def check_variables(render: Render, load: Workload, manifest: SpinManifest) -> None:
    bound: dict[str, dict] = {}
    for binding in load.bindings:
        name = binding.get("name")
        if name in bound:
            render.problem(load.obj, f"variable {name!r} is bound twice")
        bound[name] = binding
        declared = manifest.variables.get(name)
        if declared is None:
            render.problem(load.obj, f"variable {name!r} is not declared in spin.toml's [variables]")
            continue
        source = binding.get("valueFrom") or {}
        if declared.secret and "secretKeyRef" not in source:
            render.problem(load.obj, f"variable {name!r} is secret in spin.toml: bind it with valueFrom.secretKeyRef")
    for variable in manifest.variables.values():
        if variable.must_be_bound and variable.name not in bound:
            render.problem(load.obj, f"variable {variable.name!r} is required by spin.toml "
                                     "(required = true or no default) but not bound")


def check_probes(render: Render, load: Workload, manifest: SpinManifest) -> None:
    # Pods that take public traffic need both probes; a pod serving only /internal/ routes
    # (e.g. a sweep endpoint beside a Redis trigger) may rely on the process being up.
    serves_http = any(not _is_internal(r.route) for r in manifest.routes_of(load.components))
    for kind in ("liveness", "readiness", "startup"):
        if kind not in load.probes:
            if serves_http and kind != "startup":
                render.problem(load.obj, f"serves public HTTP routes but has no {kind} check")
            continue
        path = load.probes[kind][0]
        route = manifest.route_for_path(path)
        if route is None:
            render.problem(load.obj, f"{kind} check path {path!r} matches no route in spin.toml")
        elif route.component not in load.components:
            render.problem(load.obj, f"{kind} check path {path!r} is served by {route.component!r}, "
                                     f"which this {load.kind} does not run")


def check_ingress(render: Render, manifest: SpinManifest) -> None:
    loads = workloads(render, manifest)
    services = {_name(s) for s in render.of_kind("Service")}
    ingresses = render.of_kind("Ingress")
    if not ingresses:
        render.problem(None, "no Ingress: the app's Services are cluster-internal")
        return
    # (path, pathType, workload) for every rule that points at a workload's Service.
    entrances: list[tuple[str, str, Workload]] = []
    for ingress in ingresses:
        for rule in ingress.get("spec", {}).get("rules", []):
            for http_path in (rule.get("http") or {}).get("paths", []):
                service = (http_path.get("backend") or {}).get("service") or {}
                name, port = service.get("name"), (service.get("port") or {})
                path, path_type = http_path.get("path", "/"), http_path.get("pathType")
                load = workload_for_service(render, loads, name)
                if load is not None:
                    ports = service_ports(render, load)[name]
                    if port.get("number") not in ports:
                        render.problem(ingress, f"path {path!r} -> {name}: the Service listens on "
                                                f"port {', '.join(map(str, sorted(ports)))}, not {port}")
                    served = [s for r in manifest.routes_of(load.components) for s in route_sample_paths(r.route)]
                    if not any(ingress_path_matches(path, path_type, s) for s in served):
                        render.problem(ingress, f"path {path!r} reaches no route that {load.label} serves")
                    entrances.append((path, path_type, load))
                elif name not in services:
                    render.problem(ingress, f"path {path!r} -> Service {name!r}, which is neither a "
                                            "SpinApp nor a Service in the render")
    for route in manifest.http_routes:
        internal = _is_internal(route.route)
        for sample in route_sample_paths(route.route):
            owners = [load for (p, t, load) in entrances if ingress_path_matches(p, t, sample)]
            if internal and owners:
                render.problem(None, f"internal route {route.route!r} is reachable through the Ingress")
            if internal:
                continue
            if not owners:
                render.problem(None, f"public route {route.route!r} ({route.component}) is not reachable "
                                     "through the Ingress")
            for owner in owners:
                if route.component not in owner.components:
                    render.problem(None, f"route {route.route!r} goes to {owner.label}, which does not "
                                         f"run {route.component!r}")


def check_in_cluster_hosts(render: Render) -> None:
    """A `*_host` value in a ConfigMap that names a bare in-namespace host (no dot) must be a
    Service of the render listening on that port: the dev overlay's PostgreSQL and Redis."""
    services = {_name(s): {p.get("port") for p in s.get("spec", {}).get("ports", [])}
                for s in render.of_kind("Service")}
    for configmap in render.of_kind("ConfigMap"):
        for key, value in (configmap.get("data") or {}).items():
            if not key.endswith("_host") or ":" not in value:
                continue
            host, _, port = value.rpartition(":")
            if "." in host or host in ("localhost",):
                continue  # a managed service outside the cluster, or a FQDN: not checkable here
            if not port.isdigit():
                render.problem(configmap, f"{key}={value!r}: the port is not a number")
            elif host not in services:
                render.problem(configmap, f"{key}={value!r}: no Service {host!r} in the render")
            elif int(port) not in services[host]:
                render.problem(configmap, f"{key}={value!r}: Service {host} does not listen on {port}")


def check_shared_bindings(render: Render, manifest: SpinManifest) -> None:
    """A variable bound in several workloads must be bound the same way in each (e.g. the Redis
    channel `auth` publishes on and the notifier subscribes to)."""
    seen: dict[str, tuple[str, Any]] = {}
    for load in workloads(render, manifest):
        for binding in load.bindings:
            name = binding.get("name")
            value = {k: v for k, v in binding.items() if k != "name"}
            if name in seen and seen[name][1] != value:
                render.problem(load.obj, f"variable {name!r} is bound as {value}, but {seen[name][0]} "
                                         f"binds it as {seen[name][1]}: one app, one value")
            seen.setdefault(name, (load.label, value))


def check_redis_notifications(render: Render, manifest: SpinManifest) -> None:
    """Keyspace/keyevent triggers only fire if the Redis server publishes those events: every
    Redis run by the render must enable them (a managed Redis is configured outside, see k8s/README.md)."""
    needed = set()
    for channel in manifest.redis_channels:
        match = re.match(r"__(keyevent|keyspace)@[0-9*]+__:(.*)", channel)
        if match:
            needed.add("E" if match.group(1) == "keyevent" else "K")
            needed.add({"expired": "x", "evicted": "e"}.get(match.group(2), "A"))
    if not needed:
        return
    for statefulset in render.of_kind("StatefulSet"):
        for container in _pod_spec(statefulset).get("containers", []):
            if "redis" not in str(container.get("image", "")).split("/")[-1].split(":")[0]:
                continue
            args = container.get("command", []) + container.get("args", [])
            flags = ""
            for index, arg in enumerate(args[:-1]):
                if arg == "--notify-keyspace-events":
                    flags = args[index + 1]
            have = set(flags.replace("A", "g$lshzxetd"))
            missing = needed - have - ({"x", "e"} if "A" in flags else set())
            if missing:
                render.problem(statefulset, f"spin.toml subscribes to keyspace events, but this Redis runs "
                                            f"with --notify-keyspace-events {flags!r} (needs {''.join(sorted(needed))})")


def check_redis_memory(render: Render) -> None:
    """Every Redis run by the render has a memory bound and evicts (README, "Redis memory"): without
    --maxmemory it grows until the pod is OOM-killed; with noeviction (the default) a full Redis
    refuses every write, so every rate-limit counter fails and the limits fail open."""
    for statefulset in render.of_kind("StatefulSet"):
        for container in _pod_spec(statefulset).get("containers", []):
            if "redis" not in str(container.get("image", "")).split("/")[-1].split(":")[0]:
                continue
            args = [str(a) for a in container.get("command", []) + container.get("args", [])]
            flags = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
            if flags.get("--maxmemory", "0") in ("0", "0b", "0mb", "0gb"):
                render.problem(statefulset, "this Redis runs without --maxmemory (unbounded memory)")
            policy = flags.get("--maxmemory-policy", "noeviction")
            if policy not in ("allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu"):
                render.problem(statefulset, f"this Redis runs with --maxmemory-policy {policy}: when full it "
                                            f"must evict least-used keys (README, \"Redis memory\")")


def check_selectors(render: Render) -> None:
    """PodDisruptionBudgets and NetworkPolicies must select pods the render creates (a typo in a
    label silently protects nothing)."""
    pod_labels = [a.get("spec", {}).get("podLabels") or {} for a in render.of_kind("SpinApp")]
    for kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
        for obj in render.of_kind(kind):
            template = obj.get("spec", {})
            if kind == "CronJob":
                template = template.get("jobTemplate", {}).get("spec", {})
            pod_labels.append((template.get("template", {}).get("metadata") or {}).get("labels") or {})

    def selects(selector: dict | None) -> bool:
        wanted = (selector or {}).get("matchLabels") or {}
        return bool(wanted) and any(wanted.items() <= labels.items() for labels in pod_labels)

    for pdb in render.of_kind("PodDisruptionBudget"):
        if not selects(pdb.get("spec", {}).get("selector")):
            render.problem(pdb, f"selector {pdb.get('spec', {}).get('selector')} matches no pods of the render")
    for policy in render.of_kind("NetworkPolicy"):
        spec = policy.get("spec", {})
        if not selects(spec.get("podSelector")):
            render.problem(policy, f"podSelector {spec.get('podSelector')} matches no pods of the render")
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer and not selects(peer["podSelector"]):
                    render.problem(policy, f"ingress from {peer['podSelector']} matches no pods of the render")


def _is_internal(route: str) -> bool:
    """Routes under /internal/ are for callers inside the cluster only (e.g. the sweep CronJob)."""
    return route == "/internal" or route.startswith("/internal/")


def check_autoscaling(render: Render, manifest: SpinManifest) -> None:
    loads = {w.name: w for w in workloads(render, manifest)}
    for scaler in render.of_kind("HorizontalPodAutoscaler") + render.of_kind("ScaledObject"):
        target = scaler.get("spec", {}).get("scaleTargetRef", {})
        name = target.get("name")
        if target.get("kind", "Deployment") != "Deployment" or target.get("apiVersion", "apps/v1") != "apps/v1":
            render.problem(scaler, "must target the apps/v1 Deployment of a SpinApp or of edge-host")
        load = loads.get(name)
        if load is None:
            render.problem(scaler, f"targets {name!r}, which is neither a SpinApp's Deployment nor an "
                                   "edge-host Deployment")
        elif load.flags is None and not load.obj["spec"].get("enableAutoscaling"):
            render.problem(scaler, f"targets SpinApp {name}, which does not set enableAutoscaling "
                                   "(the operator would fight the autoscaler over replicas)")
        elif load.flags is not None and "replicas" in load.obj.get("spec", {}):
            render.problem(scaler, f"targets Deployment {name}, which sets replicas (every apply would "
                                   "reset what the autoscaler chose)")
    for name, load in loads.items():
        owners = [f"{s['kind']}/{_name(s)}" for s in autoscalers_of(render, name)]
        if load.flags is None and load.obj["spec"].get("enableAutoscaling") and len(owners) != 1:
            render.problem(load.obj, f"enableAutoscaling needs exactly one autoscaler, found {owners}")
        if load.flags is not None and len(owners) > 1:
            render.problem(load.obj, f"more than one autoscaler targets it: {owners}")


def check_migration_job(render: Render, manifest: SpinManifest, repo: Path,
                        secrets: dict[str, dict[str, str]]) -> None:
    jobs = [j for j in render.of_kind("Job")
            if any("scripts/migrate" in " ".join(c.get("command", []) + c.get("args", []))
                   for c in _pod_spec(j).get("containers", []))]
    if len(jobs) != 1:
        render.problem(None, f"expected one Job running scripts/migrate, found {len(jobs)}")
        return
    job = jobs[0]
    pod = _pod_spec(job)
    container = next(c for c in pod["containers"]
                     if "scripts/migrate" in " ".join(c.get("command", []) + c.get("args", [])))
    volumes = {v.get("name"): (v.get("configMap") or {}).get("name") for v in pod.get("volumes", [])}
    mounts = {m.get("mountPath"): volumes.get(m.get("name")) for m in container.get("volumeMounts", [])}
    script_path = next(a for a in container.get("command", []) + container.get("args", []) if a.endswith("scripts/migrate"))
    if not script_path.startswith("/"):
        script_path = os.path.join(container.get("workingDir", "/"), script_path)
    scripts_dir = os.path.dirname(script_path)
    migrations_dir = os.path.join(os.path.dirname(scripts_dir), "migrations")
    expected = {
        scripts_dir: (MIGRATE_SCRIPT_CONFIGMAP, {"migrate": repo / "scripts" / "migrate"}),
        migrations_dir: (MIGRATIONS_CONFIGMAP, {p.name: p for p in (repo / "migrations").glob("*.sql")}),
    }
    for mount_path, (generated_name, files) in expected.items():
        configmap_name = mounts.get(mount_path)
        configmap = render.named("ConfigMap", configmap_name) if configmap_name else None
        if configmap is None or not str(configmap_name).startswith(generated_name):
            render.problem(job, f"nothing from ConfigMap {generated_name} is mounted at {mount_path} "
                                f"(the script runs as {script_path} and finds migrations/ beside scripts/)")
            continue
        data = configmap.get("data") or {}
        size = sum(len(value.encode()) for value in data.values())
        if size > 1024 * 1024:
            render.problem(job, f"ConfigMap {configmap_name} holds {size} bytes; the API server's limit is 1 MiB "
                                "(ship the migrations in an image instead)")
        if set(data) != set(files):
            render.problem(job, f"ConfigMap {configmap_name} holds {sorted(data)}, the repository {sorted(files)}")
        for key, source in files.items():
            if key in data and data[key] != source.read_text():
                render.problem(job, f"ConfigMap {configmap_name} key {key} differs from {source.relative_to(repo)}")
    env = {e.get("name"): e for e in container.get("env", [])}
    ref = ((env.get("DATABASE_URL") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if not ref:
        render.problem(job, "DATABASE_URL must come from a secretKeyRef (the same key as db_url)")
    else:
        for load in workloads(render, manifest):
            for binding in load.bindings:
                if binding.get("name") == "db_url":
                    app_ref = (binding.get("valueFrom") or {}).get("secretKeyRef")
                    if app_ref != ref:
                        render.problem(job, f"DATABASE_URL comes from {ref}, {load.label}'s db_url "
                                            f"from {app_ref}: the Job would migrate another database")


def check_sweep_cronjob(render: Render, manifest: SpinManifest) -> None:
    loads = workloads(render, manifest)
    for cronjob in render.of_kind("CronJob"):
        pod = _pod_spec(cronjob)
        for container in pod.get("containers", []):
            env = {e.get("name"): e for e in container.get("env", [])}
            url = (env.get("SWEEP_URL") or {}).get("value")
            if url is None:
                continue
            parts = urlsplit(url)
            host = parts.hostname or ""
            service = host.split(".")[0]
            load = workload_for_service(render, loads, service)
            if load is None:
                render.problem(cronjob, f"SWEEP_URL host {host!r} is not the Service of a SpinApp or an "
                                        "edge-host Deployment")
                continue
            ports = service_ports(render, load)[service]
            if (parts.port or 80) not in ports:
                render.problem(cronjob, f"SWEEP_URL port {parts.port or 80} is not the Service's port {', '.join(map(str, sorted(ports)))}")
            route = manifest.route_for_path(parts.path)
            if route is None:
                render.problem(cronjob, f"SWEEP_URL path {parts.path!r} matches no route in spin.toml")
            elif route.component not in load.components:
                render.problem(cronjob, f"SWEEP_URL path {parts.path!r} is served by {route.component!r}, "
                                        f"which {load.label} does not run")
            token_ref = ((env.get("SWEEP_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef")
            app_refs = [(b.get("valueFrom") or {}).get("secretKeyRef") for b in load.bindings
                        if manifest.variables.get(b.get("name"), SpinVariable("", False, False, False)).secret]
            if token_ref is None or token_ref not in app_refs:
                render.problem(cronjob, f"SWEEP_TOKEN ({token_ref}) is not the Secret key of any secret "
                                        f"variable of {load.label}: the app could not check it")


def _pod_spec(obj: dict) -> dict:
    spec = obj.get("spec", {})
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


# --------------------------------------------------------------------------------------------
# Driver


# PromQL words that are not metric names: aggregation/binary keywords (functions are told
# apart by the `(` after them).
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan"}
METRICS_PATH = "/metrics"
METRICS_PORT_NAME = "metrics"


def exported_metrics(host_binary: Path | None) -> dict[str, str]:
    """`name -> type` from `edge-host metrics`."""
    binary = host_binary or edge_host.default_binary()
    try:
        out = subprocess.run([str(binary), "metrics"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise ValidationProblem(f"`edge-host metrics` failed: {err}") from err
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers,
    ranges, strings and `by (...)` lists that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![A-Za-z0-9_:])\d[\d.]*(?:[eE][-+]?\d+)?", "", text)  # number literals
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        after = text[match.end():].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def check_monitoring(repo: Path, host_binary: Path | None) -> list[str]:
    """The dashboards' queries against what edge-host exports, the PodMonitor against its flags."""
    monitoring = repo / "k8s" / "monitoring"
    if not monitoring.is_dir():
        return ["k8s/monitoring/ is missing (the Grafana dashboard and the scrape configuration)"]
    try:
        exported = exported_metrics(host_binary)
    except ValidationProblem as err:
        return [str(err)]
    known = set(exported)
    for name, kind in exported.items():
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    problems: list[str] = []
    dashboards = sorted(monitoring.glob("*.json"))
    if not dashboards:
        problems.append("k8s/monitoring/ has no Grafana dashboard JSON")
    for path in dashboards:
        where = path.relative_to(repo)
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            problems.append(f"{where}: not JSON: {err}")
            continue
        panels = dashboard.get("panels") or []
        if not panels:
            problems.append(f"{where}: no panels")
        for panel in panels:
            exprs = [t.get("expr", "") for t in panel.get("targets") or []]
            if not any(exprs):
                problems.append(f"{where}: panel {panel.get('title')!r} has no query")
            for expr in exprs:
                names = promql_metric_names(expr)
                if not names:
                    problems.append(f"{where}: panel {panel.get('title')!r}: no metric in {expr!r}")
                for name in sorted(names - known):
                    problems.append(f"{where}: panel {panel.get('title')!r} queries {name}, "
                                    "which edge-host does not export (`edge-host metrics`)")
    monitors = [doc for path in sorted(monitoring.glob("*.yaml"))
                for doc in load_yaml_documents(path.read_text()) if isinstance(doc, dict)]
    pod_monitors = [doc for doc in monitors if doc.get("kind") in ("PodMonitor", "ServiceMonitor")]
    if not pod_monitors:
        problems.append("k8s/monitoring/ has no PodMonitor/ServiceMonitor")
    for monitor in pod_monitors:
        wanted = (monitor.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if wanted != dict([EDGE_HOST_POD_LABEL]):
            problems.append(f"{monitor['kind']}/{_name(monitor)}: selects {wanted}, but the pods that run "
                            f"edge-host are the ones labelled {dict([EDGE_HOST_POD_LABEL])}")
        endpoints = monitor.get("spec", {}).get("podMetricsEndpoints") or monitor.get("spec", {}).get("endpoints") or []
        if not endpoints:
            problems.append(f"{monitor['kind']}/{_name(monitor)}: no endpoints")
        for endpoint in endpoints:
            if endpoint.get("path", "/metrics") != METRICS_PATH:
                problems.append(f"{monitor['kind']}/{_name(monitor)}: path {endpoint.get('path')!r}, "
                                f"but edge-host --metrics-listen serves {METRICS_PATH}")
            if endpoint.get("port") != METRICS_PORT_NAME:
                problems.append(f"{monitor['kind']}/{_name(monitor)}: port {endpoint.get('port')!r}, "
                                f"expected the container port named {METRICS_PORT_NAME!r}")
    return problems


def validate(repo: Path, host_binary: Path | None = None) -> list[str]:
    """All problems found in repo/k8s against repo/spin.toml; empty when everything holds.

    `host_binary` answers the routing questions (default: edge_host.default_binary()).
    """
    k8s = repo / "k8s"
    problems: list[str] = []
    for path in sorted(k8s.rglob("*.yaml")):
        if "migrations" in path.relative_to(k8s).parts[:1]:
            continue  # generated
        try:
            load_yaml_documents(path.read_text())
        except yaml.YAMLError as err:
            problems.append(f"{path.relative_to(repo)}: does not parse: {err}")
    problems.extend(check_monitoring(repo, host_binary))
    try:
        manifest = load_spin_manifest(repo / "spin.toml", host_binary)
        secrets = load_example_secrets(k8s / EXAMPLE_SECRETS_FILE)
        schemas = SchemaValidator(k8s / "schemas")
    except ValidationProblem as err:
        return problems + [str(err)]
    for doc in load_yaml_documents((k8s / EXAMPLE_SECRETS_FILE).read_text()):
        for problem in schemas.problems(doc):
            problems.append(f"k8s/{EXAMPLE_SECRETS_FILE}: Secret/{_name(doc)}: schema: {problem}")
    for name, values in secrets.items():
        if "runtime-config.toml" in values:
            try:
                tomllib.loads(values["runtime-config.toml"])
            except tomllib.TOMLDecodeError as err:
                problems.append(f"k8s/{EXAMPLE_SECRETS_FILE}: {name}: runtime-config.toml is not TOML: {err}")
        for key, value in values.items():
            if value and PLACEHOLDER not in value:
                problems.append(f"k8s/{EXAMPLE_SECRETS_FILE}: {name}.{key} looks like a real value; "
                                f"use {PLACEHOLDER} (the file is an example)")
    with tempfile.TemporaryDirectory(prefix="validate-k8s-") as tmp:
        work = Path(tmp) / "k8s"
        shutil.copytree(k8s, work, ignore=shutil.ignore_patterns("migrations"))
        try:
            write_migrations_kustomization(repo, work / "migrations")
        except MigrationsError as err:
            return problems + [str(err)]
        targets = [("base", work / "base")] + [
            (f"overlays/{d.name}", d) for d in sorted((work / "overlays").iterdir()) if d.is_dir()]
        for name, directory in targets:
            try:
                objects = kustomize_build(directory)
            except ValidationProblem as err:
                problems.append(f"[{name}] {err}")
                continue
            render = Render(name, objects)
            for obj in objects:
                for problem in schemas.problems(obj):
                    render.problem(obj, f"schema: {problem}")
            check_render(render, manifest, secrets, repo, is_base=(name == "base"))
            problems.extend(render.problems)
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="validate", choices=["validate", "gen-migrations"])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, help="gen-migrations: output directory")
    parser.add_argument("--edge-host", type=Path, default=None,
                        help="edge-host binary for routing questions (default: $EDGE_HOST_BIN or target/debug/edge-host)")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    if args.command == "gen-migrations":
        try:
            write_migrations_kustomization(repo, (args.out or repo / "k8s" / "migrations").resolve())
        except MigrationsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    try:
        host_binary = edge_host.require_binary(args.edge_host or edge_host.default_binary())
    except edge_host.EdgeHostError as err:
        print(f"k8s: error: {err}", file=sys.stderr)
        return 1
    problems = validate(repo, host_binary)
    for problem in problems:
        print(f"k8s: {problem}", file=sys.stderr)
    if problems:
        print(f"k8s: {len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("k8s: base and overlays parse, match their schemas and agree with spin.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

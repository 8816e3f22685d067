"""Tests of k8s/validate_k8s.py, run by scripts/validate-k8s.

The mutation tests copy the real tree (spin.toml, scripts/migrate, migrations/, k8s/) into a
temporary directory, break one reference there, and require the validator to name the break.
The unmodified copy must validate cleanly first, so a mutation test cannot pass by accident.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

K8S = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(K8S))

import validate_k8s as v  # noqa: E402

REPO = Path(os.environ.get("VALIDATE_K8S_REPO", K8S.parent)).resolve()


def _missing_edge_host() -> str | None:
    """Why edge-host cannot answer routing questions here, or None."""
    try:
        v.edge_host.require_binary(v.edge_host.default_binary())
    except v.edge_host.EdgeHostError as err:
        return str(err)
    return None


def copy_tree(dest: Path) -> Path:
    """A copy of what the validator reads, without the generated k8s/migrations/."""
    (dest / "scripts").mkdir(parents=True)
    shutil.copyfile(REPO / "spin.toml", dest / "spin.toml")
    shutil.copyfile(REPO / "Containerfile", dest / "Containerfile")
    shutil.copyfile(REPO / "scripts" / "migrate", dest / "scripts" / "migrate")
    shutil.copytree(REPO / "migrations", dest / "migrations")
    shutil.copytree(REPO / "k8s", dest / "k8s",
                    ignore=shutil.ignore_patterns("migrations", "__pycache__", "tests"))
    return dest


# Routes added to a copy of spin.toml where the old Python ranking and the host disagreed:
# for /a/b/c the host prefers the wildcard under the longer literal prefix (/a/b/...), the
# validator's own ranking used to prefer the parameter route (/a/:x/c).
CONFLICTING_ROUTES = ('[[trigger.http]]\nroute = "/a/:x/c"\ncomponent = "todos"\n\n'
                      '[[trigger.http]]\nroute = "/a/b/..."\ncomponent = "notifier"\n\n')


class RouteMatching(unittest.TestCase):
    """The validator asks edge-host which route serves a path; these pin that it does."""

    def setUp(self):
        missing = _missing_edge_host()
        if missing:
            self.skipTest(missing)
        self._tmp = tempfile.TemporaryDirectory(prefix="validate-k8s-routes-")
        self.repo = copy_tree(Path(self._tmp.name))
        self.addCleanup(self._tmp.cleanup)

    def test_route_table_is_the_hosts(self):
        manifest = v.load_spin_manifest(self.repo / "spin.toml")
        expected = v.edge_host.route_table(v.edge_host.default_binary(), self.repo / "spin.toml")
        self.assertEqual([(r.route, r.component) for r in manifest.http_routes], expected)
        self.assertIn(("/todos/:id", "todos"), expected)

    def test_paths_resolve_as_the_host_routes_them(self):
        path = self.repo / "spin.toml"
        path.write_text(path.read_text().replace("[[trigger.http]]\n", CONFLICTING_ROUTES + "[[trigger.http]]\n", 1))
        manifest = v.load_spin_manifest(path)
        self.assertEqual(manifest.route_for_path("/a/b/c"), v.HttpRoute("/a/b/...", "notifier"))
        self.assertEqual(manifest.route_for_path("/a/z/c"), v.HttpRoute("/a/:x/c", "todos"))
        self.assertEqual(manifest.route_for_path("/todos/42"), v.HttpRoute("/todos/:id", "todos"))
        self.assertIsNone(manifest.route_for_path("/todos/42/x"))

    def test_missing_host_is_named(self):
        problems = "\n".join(v.validate(self.repo, Path(self._tmp.name) / "no-edge-host"))
        self.assertIn("edge-host not found at", problems)
        self.assertIn("cargo build -p edge-host", problems)

    def test_sample_paths(self):
        self.assertEqual(v.route_sample_paths("/todos/:id"), ["/todos/sample"])
        self.assertEqual(v.route_sample_paths("/auth/..."), ["/auth", "/auth/sample"])
        self.assertEqual(v.route_sample_paths("/..."), ["/", "/sample"])

    def test_ingress_prefix_is_element_wise(self):
        self.assertTrue(v.ingress_path_matches("/todos", "Prefix", "/todos/1"))
        self.assertTrue(v.ingress_path_matches("/todos", "Prefix", "/todos"))
        self.assertFalse(v.ingress_path_matches("/todo", "Prefix", "/todos"))
        self.assertTrue(v.ingress_path_matches("/", "Prefix", "/internal/x"))
        self.assertFalse(v.ingress_path_matches("/health", "Exact", "/health/ready"))


class Yaml(unittest.TestCase):
    def test_duplicate_keys_are_errors(self):
        with self.assertRaises(v.yaml.YAMLError):
            v.load_yaml_documents("a: 1\na: 2\n")

    def test_close_structural_schema(self):
        schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}},
                                                   "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                                         "properties": {}}}}
        v.close_structural_schema(schema)
        self.assertIs(schema["additionalProperties"], False)
        self.assertIs(schema["properties"]["a"]["additionalProperties"], False)
        self.assertNotIn("additionalProperties", schema["properties"]["b"])


class BrokenCopies(unittest.TestCase):
    """Each test breaks one thing in a copy of the real tree and expects a named problem."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="validate-k8s-test-")
        self.repo = copy_tree(Path(self._tmp.name))

    def tearDown(self):
        self._tmp.cleanup()

    def edit(self, relative: str, old: str, new: str, count: int = 1) -> None:
        path = self.repo / relative
        text = path.read_text()
        self.assertIn(old, text, f"test is stale: {old!r} is not in {relative}")
        path.write_text(text.replace(old, new, count))

    def assertProblem(self, *fragments: str) -> None:
        problems = v.validate(self.repo)
        joined = "\n".join(problems)
        for fragment in fragments:
            self.assertIn(fragment, joined, f"expected a problem mentioning {fragment!r}, got:\n{joined}")

    def test_unmodified_copy_is_clean(self):
        self.assertEqual(v.validate(self.repo), [])

    def test_dashboard_queries_a_metric_edge_host_does_not_export(self):
        self.edit("k8s/monitoring/grafana-dashboard-edge-host.json",
                  "edge_host_postgres_pool_waiters{", "edge_host_postgres_pool_waiting{")
        self.assertProblem("queries edge_host_postgres_pool_waiting, which edge-host does not export")

    def test_dashboard_is_not_json(self):
        self.edit("k8s/monitoring/grafana-dashboard-edge-host.json", '"panels": [', '"panels": [,')
        self.assertProblem("grafana-dashboard-edge-host.json: not JSON")

    def test_scrape_path_is_not_the_metrics_listeners(self):
        self.edit("k8s/monitoring/podmonitor-edge-host.yaml", "path: /metrics", "path: /stats")
        self.assertProblem("path '/stats', but edge-host --metrics-listen serves /metrics")

    def test_secret_key_missing_from_example_secret(self):
        self.edit("k8s/base/spinapp-api.yaml", "key: jwt_signing_key}", "key: jwt_signing_kee}")
        self.assertProblem("has no key 'jwt_signing_kee'")

    def test_example_secret_without_a_referenced_key(self):
        self.edit("k8s/secret.example.yaml", "  redis_url:", "  redis_uri:")
        self.assertProblem("has no key 'redis_url'")

    def test_readiness_path_not_routed(self):
        self.edit("k8s/base/spinapp-api.yaml", "path: /health/ready", "path: /health/readyz")
        self.assertProblem("readiness check path '/health/readyz' matches no route")

    def test_probe_path_is_resolved_with_the_hosts_precedence(self):
        # /a/b/c goes to /a/b/... (notifier, not in todo-api) on the host; the old ranking sent
        # it to /a/:x/c (todos) and saw nothing wrong.
        self.edit("spin.toml", "[[trigger.http]]\n", CONFLICTING_ROUTES + "[[trigger.http]]\n")
        self.edit("k8s/base/spinapp-api.yaml", "path: /health/ready", "path: /a/b/c")
        self.assertProblem("readiness check path '/a/b/c' is served by 'notifier'")

    def test_ingress_port_is_not_the_spinapp_service_port(self):
        self.edit("k8s/base/ingress.yaml", "port: {number: 80}", "port: {number: 8080}")
        self.assertProblem("listens on port 80")

    def test_ingress_backend_is_unknown(self):
        self.edit("k8s/base/ingress.yaml", "service: {name: todo-api,", "service: {name: todo-app,")
        self.assertProblem("Service 'todo-app'")

    def test_ingress_exposes_an_internal_route(self):
        self.edit("k8s/base/ingress.yaml", "path: /health\n", "path: /\n")
        problems = "\n".join(v.validate(self.repo))
        internal = [r.route for r in v.load_spin_manifest(self.repo / "spin.toml").http_routes
                    if v._is_internal(r.route)]
        if not internal:
            self.skipTest("spin.toml has no /internal/ route")
        self.assertIn("is reachable through the Ingress", problems)

    def test_public_route_not_reachable(self):
        self.edit("k8s/base/ingress.yaml", "path: /todos\n", "path: /todoz\n")
        self.assertProblem("reaches no route", "is not reachable through the Ingress")

    def test_required_variable_added_to_spin_toml(self):
        self.edit("spin.toml", "[variables]\n", "[variables]\nnew_required_setting = { required = true }\n")
        self.assertProblem("'new_required_setting' is required by spin.toml")

    def test_required_variable_unbound(self):
        self.edit("k8s/base/spinapp-api.yaml",
                  "    - name: db_url\n      valueFrom:\n        secretKeyRef: {name: todo-secrets, key: db_url}\n", "")
        self.assertProblem("SpinApp/todo-api: variable 'db_url' is required")

    def test_undeclared_variable_bound(self):
        self.edit("k8s/base/spinapp-api.yaml", "- name: redis_host\n", "- name: redis_hots\n")
        self.assertProblem("'redis_hots' is not declared")

    def test_secret_variable_from_a_configmap(self):
        self.edit("k8s/base/spinapp-api.yaml",
                  "secretKeyRef: {name: todo-secrets, key: redis_url}",
                  "configMapKeyRef: {name: todo-config, key: redis_host}")
        self.assertProblem("variable 'redis_url' is secret in spin.toml")

    def test_misspelt_spinapp_field(self):
        self.edit("k8s/base/spinapp-api.yaml", "enableAutoscaling: true", "enableAutoScaling: true")
        self.assertProblem("schema:", "enableAutoScaling")

    def test_misspelt_builtin_field(self):
        self.edit("k8s/base/migrate-job.yaml", "backoffLimit:", "backofLimit:")
        self.assertProblem("Job/todo-migrate: schema:", "backofLimit")

    def test_misspelt_scaledobject_field(self):
        self.edit("k8s/components/keda/scaledobject.yaml", "minReplicaCount:", "minReplicas:")
        self.assertProblem("ScaledObject/todo-api: schema:")

    def test_duplicate_key(self):
        self.edit("k8s/base/spinapp-api.yaml", "  executor: containerd-shim-spin\n",
                  "  executor: containerd-shim-spin\n  executor: other\n")
        self.assertProblem("duplicate key 'executor'")

    def test_unknown_executor(self):
        self.edit("k8s/base/spinapp-api.yaml", "executor: containerd-shim-spin", "executor: containerd-shim-spinn")
        self.assertProblem("executor 'containerd-shim-spinn' is not a SpinAppExecutor")

    def test_redis_component_in_two_spinapps(self):
        manifest = v.load_spin_manifest(self.repo / "spin.toml")
        if not manifest.redis_components:
            self.skipTest("spin.toml has no Redis trigger")
        redis_component = sorted(manifest.redis_components)[0]
        self.edit("k8s/base/spinapp-api.yaml", "  components: [", f"  components: [{redis_component}, ")
        self.assertProblem(f"Redis-triggered component '{redis_component}' runs in")

    def test_component_not_in_spin_toml(self):
        self.edit("k8s/base/spinapp-api.yaml", "  components: [", "  components: [nonexistent, ")
        self.assertProblem("components ['nonexistent'] are not in spin.toml")

    def test_triggered_component_not_deployed(self):
        self.edit("spin.toml", "[[trigger.http]]\n",
                  '[[trigger.http]]\nroute = "/extra"\ncomponent = "extra"\n\n[component.extra]\n'
                  'source = "extra.wasm"\n\n[[trigger.http]]\n')
        self.assertProblem("component 'extra' has a trigger in spin.toml but no SpinApp or edge-host Deployment runs it")

    def test_image_not_named_after_the_application(self):
        self.edit("k8s/base/spinapp-api.yaml", "image: ghcr.io/example/", "image: ghcr.io/example/x")
        self.assertProblem("should be named after spin.toml's application")

    def test_spinapps_run_different_images(self):
        self.edit("k8s/base/spinapp-notifier.yaml", "image: ghcr.io/example/", "image: ghcr.io/other/x")
        self.assertProblem("the SpinApps run different images")

    def test_example_secret_with_a_real_value(self):
        self.edit("k8s/secret.example.yaml", "jwt_signing_key: REPLACE_ME", "jwt_signing_key: s3cr3t")
        self.assertProblem("todo-secrets.jwt_signing_key looks like a real value")

    def test_runtime_config_is_not_toml(self):
        self.edit("k8s/secret.example.yaml", '    type = "redis"', '    type = redis')
        self.assertProblem("runtime-config.toml is not TOML")

    def test_runtime_config_secret_missing(self):
        self.edit("k8s/base/spinapp-api.yaml", "loadFromSecret: todo-runtime-config",
                  "loadFromSecret: todo-runtime-configuration")
        self.assertProblem("Secret 'todo-runtime-configuration' with key runtime-config.toml")

    def test_disruption_budget_selects_nothing(self):
        self.edit("k8s/base/spinapp-api.yaml", "app.kubernetes.io/name: todo-api", "app.kubernetes.io/name: todo")
        self.assertProblem("PodDisruptionBudget/todo-api: selector")

    def test_network_policy_admits_nobody(self):
        self.edit("k8s/base/sweep-cronjob.yaml", "app.kubernetes.io/name: todo-jobs-sweep",
                  "app.kubernetes.io/name: todo-sweep")
        self.assertProblem("NetworkPolicy/todo-notifier: ingress from")

    def test_dev_db_host_is_not_the_postgres_service(self):
        self.edit("k8s/overlays/dev/kustomization.yaml", "      - db_host=todo-postgres:5432\n",
                  "      - db_host=todo-postgres:5433\n")
        self.assertProblem("[overlays/dev] ConfigMap/todo-config", "Service todo-postgres does not listen on 5433")

    def test_redis_without_keyspace_events(self):
        channels = v.load_spin_manifest(self.repo / "spin.toml").redis_channels
        if not any(c.startswith("__key") for c in channels):
            self.skipTest("spin.toml subscribes to no keyspace events")
        self.edit("k8s/overlays/dev/redis.yaml", "--notify-keyspace-events, Ex", "--notify-keyspace-events, Kg")
        self.assertProblem("StatefulSet/todo-redis: spin.toml subscribes to keyspace events")

    def test_redis_without_a_memory_bound_or_eviction(self):
        self.edit("k8s/overlays/dev/redis.yaml", "--maxmemory, 192mb,", "")
        self.assertProblem("StatefulSet/todo-redis: this Redis runs without --maxmemory")

    def test_redis_that_refuses_writes_when_full(self):
        self.edit("k8s/overlays/dev/redis.yaml", "--maxmemory-policy, allkeys-lru", "--maxmemory-policy, noeviction")
        self.assertProblem("StatefulSet/todo-redis: this Redis runs with --maxmemory-policy noeviction")

    def test_spinapps_disagree_on_a_shared_variable(self):
        self.edit("k8s/base/spinapp-notifier.yaml", "key: jobs_channel, optional: true",
                  "key: jobs_channel_notifier, optional: true")
        self.assertProblem("variable 'jobs_channel' is bound as")

    def test_autoscaler_targets_a_fixed_size_spinapp(self):
        self.edit("k8s/base/spinapp-api.yaml", "enableAutoscaling: true", "enableAutoscaling: false\n  replicas: 2")
        self.assertProblem("does not set enableAutoscaling")

    def test_autoscaled_spinapp_without_autoscaler(self):
        self.edit("k8s/base/hpa.yaml", "    name: todo-api\n", "    name: todo-apiv2\n")
        self.assertProblem("targets 'todo-apiv2', which is neither a SpinApp's Deployment nor an edge-host Deployment", "enableAutoscaling needs exactly one autoscaler")

    def test_optional_tuning_binding_may_lack_its_key_but_a_required_one_may_not(self):
        self.edit("k8s/base/kustomization.yaml", "      - redis_host=todo-redis:6379\n", "")
        self.edit("k8s/overlays/dev/kustomization.yaml", "      - redis_host=todo-redis:6379\n", "")
        problems = "\n".join(v.validate(self.repo))
        self.assertIn("[base] SpinApp/todo-api: .spec.variables", problems)
        self.assertIn("ConfigMap 'todo-config", problems)
        self.assertIn("has no key 'redis_host'", problems)
        self.assertNotIn("has no key 'cors_allowed_origins'", problems)

    def test_migrations_mounted_elsewhere(self):
        self.edit("k8s/base/migrate-job.yaml", "mountPath: /opt/todo/migrations", "mountPath: /opt/todo/sql")
        self.assertProblem("nothing from ConfigMap todo-migrations is mounted at /opt/todo/migrations")

    def test_new_migration_is_shipped(self):
        # The ConfigMap is generated from migrations/, so a new file is in the render; remove
        # scripts/migrate and the generator itself must refuse.
        (self.repo / "scripts" / "migrate").unlink()
        self.assertProblem("scripts/migrate is missing")

    def test_migration_database_differs_from_the_app(self):
        self.edit("k8s/base/migrate-job.yaml", "secretKeyRef: {name: todo-secrets, key: db_url}",
                  "secretKeyRef: {name: todo-secrets, key: redis_url}")
        self.assertProblem("the Job would migrate another database")

    def test_sweep_url_not_routed(self):
        self.edit("k8s/base/sweep-cronjob.yaml", "/internal/jobs/sweep", "/internal/jobs/swept")
        self.assertProblem("SWEEP_URL path '/internal/jobs/swept' matches no route")

    def test_kustomization_references_a_missing_file(self):
        self.edit("k8s/base/kustomization.yaml", "  - hpa.yaml\n", "  - hpa-missing.yaml\n")
        self.assertProblem("kubectl kustomize base failed")

    def test_overlay_leaves_an_object_outside_its_namespace(self):
        self.edit("k8s/overlays/prod-keda/kustomization.yaml", "namespace: todo\n", "")
        self.assertProblem("[overlays/prod-keda]", "spread over namespaces")

    # k8s/overlays/edge-host: Deployments that run edge-host itself.
    API = "k8s/overlays/edge-host/deployment-api.yaml"
    NOTIFIER = "k8s/overlays/edge-host/deployment-notifier.yaml"

    def test_grace_period_shorter_than_the_drain(self):
        self.edit(self.API, "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 30")
        self.assertProblem("[overlays/edge-host]", "Deployment/todo-api",
                           "terminationGracePeriodSeconds 30 is not more than --shutdown-delay + --shutdown-timeout")

    def test_probe_on_a_port_the_host_does_not_listen_on(self):
        self.edit(self.API, "httpGet: {path: /health/ready, port: http}", "httpGet: {path: /health/ready, port: metrics}")
        self.assertProblem("readiness probe port 'metrics' is not the --listen port 8080")

    def test_probe_on_a_route_of_a_component_the_host_does_not_run(self):
        self.edit(self.NOTIFIER, "            - --component-id=health\n", "")
        self.assertProblem("Deployment/todo-notifier", "check path '/health/ready' is served by 'health', "
                                                       "which this Deployment does not run")

    def test_component_id_not_in_spin_toml(self):
        self.edit(self.API, "--component-id=todos", "--component-id=todo")
        self.assertProblem("components ['todo'] are not in spin.toml",
                           "component 'todos' has a trigger in spin.toml but no SpinApp or edge-host Deployment runs it")

    def test_notifier_selected_in_both_deployments(self):
        self.edit(self.API, "            - --component-id=todos\n",
                  "            - --component-id=todos\n            - --component-id=notifier\n")
        self.assertProblem("Redis-triggered component 'notifier' runs in ['Deployment todo-api', "
                           "'Deployment todo-notifier']")

    def test_metrics_listener_on_an_undeclared_port(self):
        self.edit(self.API, "--metrics-listen=0.0.0.0:9090", "--metrics-listen=0.0.0.0:9100")
        self.assertProblem("--metrics-listen port 9100 is not the container port named 'metrics'",
                           "annotation prometheus.io/port 9090 is not the --metrics-listen port 9100")

    def test_no_metrics_listener(self):
        self.edit(self.NOTIFIER, "            - --metrics-listen=0.0.0.0:9090\n", "")
        self.assertProblem("Deployment/todo-notifier", "no --metrics-listen: the pods cannot be scraped")

    def test_pods_the_podmonitor_does_not_select(self):
        self.edit(self.API, "app.kubernetes.io/runtime: edge-host", "app.kubernetes.io/runtime: spin")
        self.assertProblem("pods lack the label app.kubernetes.io/runtime: edge-host")

    def test_loopback_listener(self):
        self.edit(self.API, "--listen=0.0.0.0:8080", "--listen=127.0.0.1:8080")
        self.assertProblem("--listen 127.0.0.1:8080: the kubelet and Services cannot reach a loopback listener")

    def test_manifest_path_not_where_the_image_puts_it(self):
        self.edit("Containerfile", "COPY target/package/ /app/", "COPY target/package/ /srv/todo/")
        self.assertProblem("--from /app/spin.toml, but Containerfile puts the app's spin.toml at /srv/todo/spin.toml")

    def test_image_without_the_release_host(self):
        self.edit("Containerfile", "COPY target/release/edge-host /usr/local/bin/edge-host\n", "")
        self.assertProblem("Containerfile: does not COPY target/release/edge-host")

    def test_service_misses_the_hosts_port(self):
        self.edit("k8s/overlays/edge-host/services.yaml", "targetPort: http}", "targetPort: 8081}", count=2)
        self.assertProblem("no Service in the render reaches its --listen port 8080")


class GeneratedMigrations(unittest.TestCase):
    def test_lists_every_migration_in_order(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "migrations"
            v.write_migrations_kustomization(REPO, out)
            text = (out / "kustomization.yaml").read_text()
            names = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
            positions = [text.index(f"files/migrations/{n}") for n in names]
            self.assertEqual(positions, sorted(positions))
            for name in names:
                self.assertEqual((out / "files" / "migrations" / name).read_bytes(),
                                 (REPO / "migrations" / name).read_bytes())


@unittest.skipUnless(os.environ.get("DATABASE_URL") and shutil.which("psql"),
                     "needs DATABASE_URL and psql (scripts/test provides both)")
class MigrationJobRuns(unittest.TestCase):
    """Runs the rendered migration Job's command against a throwaway database.

    The Job's ConfigMap volumes are laid out the way the kubelet does (a `..data` symlink to a
    timestamped directory, one symlink per key), under a temporary root instead of `/`, so this
    proves the rendered command, working directory, mounts and file modes fit scripts/migrate.
    """

    def test_rendered_job_migrates_and_is_idempotent(self):
        import subprocess
        from urllib.parse import urlsplit, urlunsplit

        with tempfile.TemporaryDirectory(prefix="migrate-job-test-") as tmp:
            tmp = Path(tmp)
            work = copy_tree(tmp / "repo")
            v.write_migrations_kustomization(work, work / "k8s" / "migrations")
            objects = v.kustomize_build(work / "k8s" / "base")
            configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
            job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == "todo-migrate")
            pod = job["spec"]["template"]["spec"]
            container = pod["containers"][0]
            volumes = {vol["name"]: vol for vol in pod["volumes"]}
            root = tmp / "root"
            for mount in container["volumeMounts"]:
                volume = volumes[mount["name"]]
                target = root / mount["mountPath"].lstrip("/")
                target.mkdir(parents=True)
                if "configMap" not in volume:
                    continue
                stamped = target / "..2026_01_01_00_00_00.000000000"
                stamped.mkdir()
                (target / "..data").symlink_to(stamped.name)
                for key, value in configmaps[volume["configMap"]["name"]].items():
                    (stamped / key).write_text(value)
                    (stamped / key).chmod(volume["configMap"].get("defaultMode", 0o644))
                    (target / key).symlink_to(f"..data/{key}")
            command = [str(root / a.lstrip("/")) if a.startswith("/") and (root / a.lstrip("/")).exists() else a
                       for a in container.get("command", []) + container.get("args", [])]

            admin_url = os.environ["DATABASE_URL"]
            database = f"k8s_job_test_{os.getpid()}"
            parts = urlsplit(admin_url)
            job_url = urlunsplit(parts._replace(path=f"/{database}"))
            psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_url]
            subprocess.run(psql + ["-c", f"CREATE DATABASE {database}"], check=True, capture_output=True)
            try:
                env = dict(os.environ, DATABASE_URL=job_url)
                env.pop("MIGRATIONS_DIR", None)
                for attempt in (1, 2):
                    result = subprocess.run(command, cwd=root / container["workingDir"].lstrip("/"),
                                            env=env, capture_output=True, text=True, timeout=120)
                    self.assertEqual(result.returncode, 0, f"run {attempt}: {result.stdout}{result.stderr}")
                count = subprocess.run(["psql", "-X", "-At", "-d", job_url, "-c",
                                        "SELECT count(*) FROM schema_migrations"],
                                       check=True, capture_output=True, text=True).stdout.strip()
                self.assertEqual(int(count), len(list((REPO / "migrations").glob("*.sql"))))
            finally:
                subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {database}"], capture_output=True)


def _missing_for_live_tests() -> str | None:
    """Why the tests against a running edge-host cannot run here, or None."""
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        return "needs DATABASE_URL and REDIS_URL (scripts/services env)"
    for tool in ("psql", "curl", "sh"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if _missing_edge_host():
        return _missing_edge_host()
    manifest = tomllib.loads((REPO / "spin.toml").read_text())
    for component in manifest.get("component", {}).values():
        source = component.get("source")
        if isinstance(source, str) and not (REPO / source).is_file():
            return f"needs {source} (scripts/build-components)"
    return None


def _migrated_database(prefix: str):
    """A new database on DATABASE_URL's server with scripts/migrate applied: its URL, and a
    function that drops it."""
    import subprocess
    from urllib.parse import urlsplit, urlunsplit

    admin_url = os.environ["DATABASE_URL"]
    database = f"{prefix}_{os.getpid()}"
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_url]
    subprocess.run(psql + ["-c", f"CREATE DATABASE {database}"], check=True, capture_output=True)
    db_url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))

    def drop() -> None:
        subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)

    try:
        subprocess.run([str(REPO / "scripts" / "migrate"), db_url], check=True, capture_output=True)
    except BaseException:
        drop()
        raise
    return db_url, drop


def _http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@unittest.skipIf(_missing_for_live_tests(), _missing_for_live_tests() or "")
class AgainstTheRunningApp(unittest.TestCase):
    """The rendered probes and the sweep CronJob's command, run against the real app.

    edge-host serves spin.toml (every component, as SpinKube's pods together do) on a loopback
    port, with a throwaway migrated database; then each SpinApp's probe paths must answer 200,
    and the CronJob's own shell command (curl, header from stdin) must succeed with the token the
    app is given and fail with another one.
    """

    @classmethod
    def setUpClass(cls):
        import secrets

        cls.tmp = tempfile.TemporaryDirectory(prefix="k8s-live-test-")
        work = copy_tree(Path(cls.tmp.name) / "repo")
        v.write_migrations_kustomization(work, work / "k8s" / "migrations")
        cls.objects = v.kustomize_build(work / "k8s" / "base")

        db_url, cls.drop_database = _migrated_database("k8s_live_test")

        cls.token = secrets.token_hex(16)
        cls.host = None
        try:
            cls.host = v.edge_host.start(
                v.edge_host.default_binary(), REPO / "spin.toml", cwd=REPO,
                log_path=Path(cls.tmp.name) / "edge-host.log",
                extra_args=["--variable", f"db_url={db_url}", "--variable", f"jobs_sweep_token={cls.token}"])
        except v.edge_host.EdgeHostError as err:
            cls.tearDownClass()
            raise AssertionError(str(err)) from err
        cls.base_url = cls.host.url

    @classmethod
    def tearDownClass(cls):
        if cls.host is not None:
            cls.host.stop()
        cls.drop_database()
        cls.tmp.cleanup()

    def test_every_probe_path_answers_200(self):
        probed = 0
        for app in (o for o in self.objects if o["kind"] == "SpinApp"):
            for kind, probe in (app["spec"].get("checks") or {}).items():
                url = self.base_url + probe["httpGet"]["path"]
                self.assertEqual(_http_status(url), 200, f"{app['metadata']['name']} {kind} probe {url}")
                probed += 1
        self.assertGreater(probed, 0)

    def _run_sweep(self, token: str):
        import subprocess
        from urllib.parse import urlsplit

        cronjob = next(o for o in self.objects if o["kind"] == "CronJob")
        container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        env["SWEEP_URL"] = self.base_url + urlsplit(env["SWEEP_URL"]).path
        env["SWEEP_TOKEN"] = token
        command = container.get("command", []) + container.get("args", [])
        return subprocess.run(command, env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)

    def test_sweep_cronjob_command_succeeds_with_the_apps_token(self):
        result = self._run_sweep(self.token)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_sweep_cronjob_command_fails_with_another_token(self):
        result = self._run_sweep(self.token + "x")
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)


@unittest.skipIf(_missing_for_live_tests(), _missing_for_live_tests() or "")
class EdgeHostDeploymentsServe(unittest.TestCase):
    """Each Deployment of k8s/overlays/edge-host, run as its pod would run it: the container's
    own `edge-host up` arguments (components, drain, metrics), with only the addresses moved to
    loopback and the app from the repository instead of the image. Its probes must answer 200,
    its metrics port must serve Prometheus text, a route of a component it leaves out must be
    404, and on SIGTERM it must keep serving through --shutdown-delay, then exit 0 within
    the grace period the pod gives it."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="k8s-edge-host-test-")
        work = copy_tree(Path(cls.tmp.name) / "repo")
        v.write_migrations_kustomization(work, work / "k8s" / "migrations")
        cls.objects = v.kustomize_build(work / "k8s" / "overlays" / "edge-host")
        cls.db_url, cls.drop_database = _migrated_database("k8s_edge_host_test")

    @classmethod
    def tearDownClass(cls):
        cls.drop_database()
        cls.tmp.cleanup()

    def deployment(self, name: str) -> tuple[dict, dict]:
        deployment = next(o for o in self.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
        return deployment, v.edge_host_container(deployment)

    def start(self, name: str) -> tuple[v.edge_host.RunningHost, dict, dict]:
        """The Deployment's host on loopback; --from and --listen come from edge_host.start."""
        deployment, container = self.deployment(name)
        args = []
        for arg in container["args"][1:]:  # after `up`
            flag = arg.partition("=")[0]
            if flag in ("--from", "--listen"):
                continue
            args.append("--metrics-listen=127.0.0.1:0" if flag == "--metrics-listen" else arg)
        host = v.edge_host.start(
            v.edge_host.default_binary(), REPO / "spin.toml", cwd=REPO,
            log_path=Path(self.tmp.name) / f"{name}.log",
            extra_args=args + ["--variable", f"db_url={self.db_url}",
                               "--variable", "jobs_sweep_token=k8s-edge-host-test-token"])
        self.addCleanup(host.stop)
        return host, deployment, container

    def probes_answer(self, host, container) -> None:
        for kind in ("startup", "liveness", "readiness"):
            path = container[f"{kind}Probe"]["httpGet"]["path"]
            self.assertEqual(_http_status(host.url + path), 200, f"{kind} probe {path}\n{host.log_tail()}")

    def drains_and_exits_0(self, host, deployment, container) -> None:
        import signal
        import time

        flags = v.edge_host_flags(container["args"])
        delay = v.parse_duration_s(flags["--shutdown-delay"][-1])
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        signalled = time.monotonic()
        host.process.send_signal(signal.SIGTERM)
        # Inside --shutdown-delay the listener is still open: the endpoints are being removed.
        self.assertEqual(_http_status(host.url + "/health"), 200, "served during --shutdown-delay")
        self.assertLess(time.monotonic() - signalled, delay, "the check itself outlasted the delay")
        self.assertEqual(host.process.wait(timeout=grace), 0, host.log_tail())
        self.assertGreaterEqual(time.monotonic() - signalled, delay, "exited before --shutdown-delay ended")

    def metrics_are_served(self, host) -> None:
        import urllib.request

        self.assertIsNotNone(host.metrics_url, "the ready file names no metrics listener")
        with urllib.request.urlopen(host.metrics_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        self.assertIn("edge_host_http_requests_total", text)

    def test_api_deployment(self):
        host, deployment, container = self.start("todo-api")
        self.probes_answer(host, container)
        self.metrics_are_served(host)
        self.assertEqual(_http_status(host.url + "/internal/jobs/sweep"), 404,
                         "the notifier's sweep route is not this Deployment's")
        self.drains_and_exits_0(host, deployment, container)

    def test_notifier_deployment(self):
        host, deployment, container = self.start("todo-notifier")
        self.probes_answer(host, container)
        self.metrics_are_served(host)
        self.assertEqual(_http_status(host.url + "/todos"), 404, "the API's routes are not this Deployment's")
        self.assertIn("Redis channel", host.log_tail(200), "the notifier subscribes")
        self.drains_and_exits_0(host, deployment, container)


class Package(unittest.TestCase):
    """scripts/package --no-build on a copy, with stand-in bytes for every component source."""

    def test_layout_and_digests(self):
        import hashlib
        import json
        import subprocess

        with tempfile.TemporaryDirectory(prefix="package-test-") as tmp:
            repo = copy_tree(Path(tmp))
            shutil.copyfile(REPO / "scripts" / "package", repo / "scripts" / "package")
            manifest = tomllib.loads((repo / "spin.toml").read_text())
            sources = {cid: c["source"] for cid, c in manifest["component"].items() if isinstance(c.get("source"), str)}
            for cid, source in sources.items():
                (repo / source).parent.mkdir(parents=True, exist_ok=True)
                (repo / source).write_bytes(f"stand-in for {cid}".encode())
            # The web component's `files` (the front end's build), one stand-in page.
            page = repo / "web" / "dist" / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text("<!doctype html>")
            result = subprocess.run([sys.executable, str(repo / "scripts" / "package"), "--no-build"],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stderr)
            out = repo / "target" / "package"
            described = json.loads((out / "package.json").read_text())
            self.assertEqual(described["application"], manifest["application"]["name"])
            self.assertEqual({layer["component"] for layer in described["layers"]}, set(sources))
            files = [layer for layer in described["layers"] if layer["role"] == "file"]
            self.assertEqual([(f["component"], f["path"]) for f in files], [("web", "web/dist/index.html")])
            for layer in described["layers"]:
                data = (out / layer["path"]).read_bytes()
                self.assertEqual(layer["digest"], "sha256:" + hashlib.sha256(data).hexdigest())
            self.assertEqual((out / "spin.toml").read_bytes(), (repo / "spin.toml").read_bytes())
            self.assertTrue((repo / "k8s" / "migrations" / "kustomization.yaml").is_file())
            # A missing component file is an error, not an incomplete package.
            (repo / next(iter(sources.values()))).unlink()
            result = subprocess.run([sys.executable, str(repo / "scripts" / "package"), "--no-build"],
                                    capture_output=True, text=True)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("does not exist", result.stderr)


if __name__ == "__main__":
    unittest.main()

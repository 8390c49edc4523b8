"""``amoeba deploy kubernetes``: the Kubernetes manifests of a whole cluster (PostgreSQL, migrate, orchestrator, workers)."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import yaml

from cli.errors import UserError

deploy_app = typer.Typer(
    help="Print deployment manifests: the docker-compose topology (PostgreSQL, migrate, orchestrator, workers) "
    "for other platforms.",
    no_args_is_help=True,
)

DEFAULT_IMAGE = "amoeba:latest"  # the tag docker-compose.yml builds from Dockerfile
DEFAULT_GPU_IMAGE = "amoeba-cuda:latest"  # and deploy/docker-compose.cuda.yml from Dockerfile.cuda
POSTGRES_IMAGE = "postgres:16"
DEFAULT_STORAGE = "20Gi"
PORT = 50051
DATA_DIR = "/data"
CERTS_DIR = "/certs"
APP_DIR = "/app"  # WORKDIR of both images: deploy/healthcheck.py is at /app/deploy/healthcheck.py
UID = 1000  # the `amoeba` user of both images
POSTGRES_UID = 999  # the `postgres` user of the postgres image

POSTGRES = "amoeba-postgres"
MIGRATE = "amoeba-migrate"
ORCHESTRATOR = "amoeba-orchestrator"
WORKER = "amoeba-worker"

#: Seconds a worker pod gets between SIGTERM and SIGKILL. The worker cancels its evaluation at the next
#: training step and releases the lease; a step that is still compiling (the first of a new genome: about
#: a minute cold) cannot be interrupted, so this matches the Slurm script's --signal=TERM@120.
WORKER_GRACE_S = 120
#: The orchestrator drains in-flight calls for `amoeba server --grace` (10 s) after SIGTERM; as compose.
SERVER_GRACE_S = 30

# The orchestrator's init container: wait until `amoeba migrate` (the Job) has brought the schema to the
# head revision of this image, as compose's `service_completed_successfully`. Without it the server would
# exit on the old schema and Kubernetes would restart it with a growing back-off.
WAIT_FOR_SCHEMA = """\
import sys, time
from db import StoreError
from db.schema import current_revision, head_revision
head = head_revision()
while True:
    try:
        at = current_revision(sys.argv[1])
    except StoreError as exc:
        at = f"unreachable ({exc})"
    if at == head:
        break
    print(f"waiting for amoeba migrate: database at {at or 'no revision'}, this image needs {head}", flush=True)
    time.sleep(2)
"""

# The migrate Job's init container: wait until PostgreSQL accepts connections (a fresh StatefulSet runs
# initdb first) instead of failing the Job's first tries.
WAIT_FOR_POSTGRES = 'until pg_isready --dbname="$DATABASE_URL"; do sleep 2; done'

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A positive storage quantity: 20Gi, 500Mi, 1T, 1.5Ti (binary or decimal SI suffix, or none: bytes).
_QUANTITY = re.compile(r"^(?=.*[1-9])[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
EVALUATORS = ("train", "table")


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    """The flags of ``amoeba deploy kubernetes``; the defaults are what deploy/kubernetes/amoeba.yaml holds."""

    workers: int = 4
    gpus_per_worker: int = 0
    image: str = DEFAULT_IMAGE
    gpu_image: str = DEFAULT_GPU_IMAGE
    evaluator: str = "train"
    postgres_url: str | None = None
    postgres_storage: str | None = None
    postgres_secret: str = POSTGRES
    artifacts: str | None = None
    namespace: str = "amoeba"
    token_secret: str = "amoeba-token"
    tls_secret: str | None = None
    data_claim: str | None = None

    def checked(self) -> KubernetesOptions:
        """These options, or a UserError naming the first flag that is wrong."""
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise UserError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.evaluator not in EVALUATORS:
            raise UserError(f"--evaluator must be one of {', '.join(EVALUATORS)}, got {self.evaluator!r}")
        if self.gpus_per_worker > 0 and self.evaluator != "train":
            raise UserError("--gpus-per-worker needs --evaluator train (the table evaluator uses no GPU)")
        for flag, image in (("--image", self.image), ("--gpu-image", self.gpu_image)):
            if not image or any(c.isspace() for c in image):
                raise UserError(f"{flag} must be an image reference such as {DEFAULT_IMAGE}, got {image!r}")
        if self.postgres_url is not None and self.postgres_storage is not None:
            raise UserError("give either --postgres-url (an external database) or --postgres-storage (the volume "
                            "of the PostgreSQL this renders), not both")
        if self.postgres_storage is not None and not _QUANTITY.match(self.postgres_storage):
            raise UserError(f"--postgres-storage must be a Kubernetes quantity such as 20Gi or 500Mi, "
                            f"got {self.postgres_storage!r}")
        if self.postgres_url is not None:
            _check_postgres_url(self.postgres_url)
        if self.artifacts is not None and not _URL.match(self.artifacts):
            raise UserError(f"--artifacts must be a URL such as s3://bucket/path, got {self.artifacts!r}")
        if len(self.namespace) > 63 or not _DNS_LABEL.match(self.namespace):
            raise UserError(f"--namespace must be a DNS-1123 label (lower-case letters, digits and '-', at most 63), "
                            f"got {self.namespace!r}")
        for flag, name in (("--token-secret", self.token_secret), ("--postgres-secret", self.postgres_secret),
                           ("--tls-secret", self.tls_secret), ("--data-claim", self.data_claim)):
            if name is not None and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
                raise UserError(f"{flag} must be a Kubernetes object name (lower-case letters, digits, '-' and '.'), "
                                f"got {name!r}")
        return self

    @property
    def storage(self) -> str:
        return self.postgres_storage or DEFAULT_STORAGE

    @property
    def database_url(self) -> str:
        # No password in the URL (it would be printed here): libpq reads it from PGPASSWORD, set from a Secret.
        return self.postgres_url or f"postgresql://amoeba@{POSTGRES}:5432/amoeba"

    @property
    def server_address(self) -> str:
        return f"{ORCHESTRATOR}:{PORT}"

    def command_line(self) -> str:
        """The `amoeba deploy kubernetes` command that renders these options (non-default flags only)."""
        default = KubernetesOptions()
        parts = ["amoeba deploy kubernetes"]
        for flag, attr in _FLAGS:
            value = getattr(self, attr)
            if value != getattr(default, attr):
                parts.append(f"{flag} {shlex.quote(str(value))}")
        return " ".join(parts)


_FLAGS = (
    ("--workers", "workers"), ("--gpus-per-worker", "gpus_per_worker"), ("--image", "image"),
    ("--gpu-image", "gpu_image"), ("--evaluator", "evaluator"), ("--postgres-url", "postgres_url"),
    ("--postgres-storage", "postgres_storage"), ("--postgres-secret", "postgres_secret"),
    ("--artifacts", "artifacts"), ("--namespace", "namespace"), ("--token-secret", "token_secret"),
    ("--tls-secret", "tls_secret"), ("--data-claim", "data_claim"),
)


def _check_postgres_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise UserError(f"--postgres-url must be postgresql://USER@HOST:PORT/DB, got {url!r}")
    if not parts.hostname:
        raise UserError(f"--postgres-url needs a host name (postgresql://USER@HOST:PORT/DB), got {url!r}")
    if parts.password is not None:
        raise UserError("--postgres-url must not contain a password (it would be printed into the manifests): "
                        "put it in the Secret named by --postgres-secret, key 'password'")


# --- the manifests ---------------------------------------------------------------------------------------


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "amoeba", "app.kubernetes.io/component": component}


def _meta(opts: KubernetesOptions, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": opts.namespace,
            "labels": {**_labels(component), "app.kubernetes.io/part-of": "amoeba"}}


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _password_env(opts: KubernetesOptions) -> dict[str, Any]:
    # An external database may need no password (certificates, trust): then the Secret may be absent.
    return _secret_env("PGPASSWORD", opts.postgres_secret, "password", optional=opts.postgres_url is not None)


def _amoeba_pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """Pod spec shared by the amoeba pods: the image's non-root user, no API access, no service env vars."""
    return {
        # Kubernetes would otherwise add AMOEBA_ORCHESTRATOR_PORT and friends (one set per Service) to the
        # environment, next to the AMOEBA_* variables the commands read.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # no pod talks to the Kubernetes API
        # The image's USER is a name; runAsNonRoot needs the number to be checked.
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
        **{k: v for k, v in spec.items() if k != "volumes"},
        "containers": containers,
        **({"volumes": spec["volumes"]} if spec.get("volumes") else {}),
    }


def _container(name: str, image: str, command: list[str], env: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command}
    if env:
        out["env"] = env
    out.update(more)
    out["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return out


def _postgres(opts: KubernetesOptions) -> list[dict[str, Any]]:
    labels = _labels("postgres")
    data = "/var/lib/postgresql/data"
    ready = ["pg_isready", "-U", "amoeba", "-d", "amoeba"]
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(opts, POSTGRES, "postgres"),
        # Headless: the StatefulSet's stable network identity; only the migrate Job and the orchestrator dial it.
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "postgres", "port": 5432}]},
    }
    container = {
        "name": "postgres", "image": POSTGRES_IMAGE, "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "POSTGRES_USER", "value": "amoeba"},
            {"name": "POSTGRES_DB", "value": "amoeba"},
            _secret_env("POSTGRES_PASSWORD", opts.postgres_secret, "password"),
            # A subfolder: the volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": f"{data}/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 5, "timeoutSeconds": 5},
        "livenessProbe": {"exec": {"command": ready}, "initialDelaySeconds": 30, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": data}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(opts, POSTGRES, "postgres"),
        "spec": {
            "serviceName": POSTGRES,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    # The image's postgres user from the start (no root entrypoint); fsGroup makes the volume its own.
                    "securityContext": {"runAsNonRoot": True, "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID,
                                        "fsGroup": POSTGRES_UID},
                    "terminationGracePeriodSeconds": 60,  # a fast shutdown writes a checkpoint first
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": opts.storage}}},
            }],
        },
    }
    return [service, statefulset]


def _migrate(opts: KubernetesOptions) -> dict[str, Any]:
    labels = _labels("migrate")
    libpq_url = opts.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    wait = _container("wait-for-postgres", POSTGRES_IMAGE, ["sh", "-c", WAIT_FOR_POSTGRES],
                      [{"name": "DATABASE_URL", "value": libpq_url}])
    migrate = _container("migrate", opts.image, ["amoeba", "migrate", "--db", opts.database_url], [_password_env(opts)])
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(opts, MIGRATE, "migrate"),
        "spec": {
            "backoffLimit": 6,
            # Deleted a while after it succeeded, so that applying these manifests again (a new image: a new
            # schema) runs a new migration instead of failing on the finished Job's immutable template.
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": _amoeba_pod([migrate], restartPolicy="OnFailure", initContainers=[wait]),
            },
        },
    }


def _health_probe(opts: KubernetesOptions, **timing: Any) -> dict[str, Any]:
    if opts.tls_secret is None:
        # The kubelet's own gRPC probe asks the standard grpc.health.v1 service, which the token leaves open.
        return {"grpc": {"port": PORT}, **timing}
    # The kubelet's gRPC probe speaks plaintext only; with TLS the image's probe script checks the same service.
    command = ["python", f"{APP_DIR}/deploy/healthcheck.py", "--server", f"localhost:{PORT}",
               "--tls-ca", f"{CERTS_DIR}/ca.crt", "--authority", ORCHESTRATOR, "--quiet"]
    return {"exec": {"command": command}, **timing}


def _tls_volume(opts: KubernetesOptions, items: list[str] | None = None) -> dict[str, Any]:
    secret: dict[str, Any] = {"secretName": opts.tls_secret, "defaultMode": 0o440}  # readable by fsGroup
    if items is not None:
        secret["items"] = [{"key": k, "path": k} for k in items]
    return {"name": "tls", "secret": secret}


def _orchestrator(opts: KubernetesOptions) -> list[dict[str, Any]]:
    labels = _labels("orchestrator")
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(opts, ORCHESTRATOR, "orchestrator"),
        "spec": {"selector": labels, "ports": [{"name": "grpc", "port": PORT, "targetPort": "grpc"}]},
    }
    command = ["amoeba", "server", "--db", opts.database_url, "--host", "0.0.0.0", "--port", str(PORT)]
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if opts.tls_secret is not None:
        command += ["--tls-cert", f"{CERTS_DIR}/tls.crt", "--tls-key", f"{CERTS_DIR}/tls.key"]
        mounts.append({"name": "tls", "mountPath": CERTS_DIR, "readOnly": True})
        volumes.append(_tls_volume(opts))
    if opts.artifacts is not None:
        command += ["--artifacts", opts.artifacts]
    env = [_secret_env("AMOEBA_TOKEN", opts.token_secret, "token"), _password_env(opts)]
    extra: dict[str, Any] = {
        "ports": [{"name": "grpc", "containerPort": PORT}],
        # Ready: serving (NOT_SERVING while the database is unreachable or while draining after SIGTERM).
        "readinessProbe": _health_probe(opts, periodSeconds=5, timeoutSeconds=5, failureThreshold=2),
        # Alive: a minute of failed checks restarts it (a fresh start also re-opens the database).
        "livenessProbe": _health_probe(opts, initialDelaySeconds=10, periodSeconds=10, timeoutSeconds=5,
                                       failureThreshold=6),
    }
    if mounts:
        extra["volumeMounts"] = mounts
    server = _container("orchestrator", opts.image, command, env, **extra)
    wait = _container("wait-for-schema", opts.image, ["python", "-c", WAIT_FOR_SCHEMA, opts.database_url],
                      [_password_env(opts)])
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": SERVER_GRACE_S, "initContainers": [wait]}
    if volumes:
        pod["volumes"] = volumes
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(opts, ORCHESTRATOR, "orchestrator"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one orchestrator at a time, also during an upgrade
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _amoeba_pod([server], **pod)},
        },
    }
    return [service, deployment]


def _workers(opts: KubernetesOptions) -> dict[str, Any]:
    labels = _labels("worker")
    gpu = opts.gpus_per_worker > 0
    # --wait: a Deployment restarts a container that exits, so a worker waits for the next experiment instead.
    command = ["amoeba", "worker", "--server", opts.server_address, "--evaluator", opts.evaluator,
               "--data-dir", DATA_DIR, "--wait"]
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": DATA_DIR}]
    # Datasets, downloads and the JAX compilation cache: per pod, or shared through a ReadWriteMany claim.
    data: dict[str, Any] = ({"persistentVolumeClaim": {"claimName": opts.data_claim}} if opts.data_claim
                            else {"emptyDir": {}})
    volumes: list[dict[str, Any]] = [{"name": "data", **data}]
    if opts.tls_secret is not None:
        command += ["--tls-ca", f"{CERTS_DIR}/ca.crt"]
        mounts.append({"name": "tls", "mountPath": CERTS_DIR, "readOnly": True})
        volumes.append(_tls_volume(opts, items=["ca.crt"]))  # the CA only: the server key stays with the server
    env = [_secret_env("AMOEBA_TOKEN", opts.token_secret, "token"),
           {"name": "AMOEBA_CACHE", "value": f"{DATA_DIR}/cache"}]
    # No artifact URL here: each lease names where its weights go (the server's --artifacts); an object
    # store's credentials come the usual way (AWS_* variables, a workload identity).
    extra: dict[str, Any] = {}
    if gpu:
        extra["resources"] = {"limits": {"nvidia.com/gpu": opts.gpus_per_worker}}
    extra["volumeMounts"] = mounts
    worker = _container("worker", opts.gpu_image if gpu else opts.image, command, env, **extra)
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": WORKER_GRACE_S}
    if gpu:
        # GPU nodes are often tainted so that only GPU pods land there.
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    pod["volumes"] = volumes
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(opts, WORKER, "worker"),
        "spec": {
            "replicas": opts.workers,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _amoeba_pod([worker], **pod)},
        },
    }


def components(opts: KubernetesOptions) -> list[tuple[str, list[dict[str, Any]]]]:
    """(component, its objects) in the order they are applied."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    if opts.postgres_url is None:
        out.append(("postgres", _postgres(opts)))
    out += [("migrate", [_migrate(opts)]), ("orchestrator", _orchestrator(opts)), ("worker", [_workers(opts)])]
    return out


def manifests(opts: KubernetesOptions) -> list[dict[str, Any]]:
    """Every object, in the order they are applied."""
    return [doc for _, docs in components(opts) for doc in docs]


def header(opts: KubernetesOptions, target: str = "amoeba.yaml") -> str:
    """The comment on top of the output: what it is, and the secrets to create before applying ``target``."""
    ns = opts.namespace
    what = "an external PostgreSQL" if opts.postgres_url else "PostgreSQL"
    gpus = f", {opts.gpus_per_worker} GPU(s) each" if opts.gpus_per_worker else ""
    lines = [
        f"Amoeba on Kubernetes: {what}, a one-shot schema migration, the orchestrator and {opts.workers} "
        f"worker(s){gpus}.",
        f"Rendered by `{opts.command_line()}`: change the flags, not this file.",
        "Secrets are referenced, never rendered; create the namespace and them first:",
        "",
        f"  kubectl create namespace {ns}",
        f"  kubectl -n {ns} create secret generic {opts.token_secret} --from-literal=token=$(openssl rand -hex 32)",
    ]
    if opts.postgres_url is None:
        lines.append(f"  kubectl -n {ns} create secret generic {opts.postgres_secret} "
                     "--from-literal=password=$(openssl rand -hex 16)")
    else:
        lines.append(f"  kubectl -n {ns} create secret generic {opts.postgres_secret} --from-literal=password=... "
                     "(if the database needs one)")
    if opts.tls_secret is not None:
        lines += [
            f"  deploy/make-certs.sh certs {ORCHESTRATOR}   # or any certificate issued for {ORCHESTRATOR}",
            f"  kubectl -n {ns} create secret generic {opts.tls_secret} --from-file=tls.crt=certs/server.crt "
            "--from-file=tls.key=certs/server.key --from-file=ca.crt=certs/ca.crt",
        ]
    lines += [
        f"  kubectl apply -f {target}",
        f"  kubectl -n {ns} exec deploy/{ORCHESTRATOR} -- amoeba experiment create "
        f"--config {APP_DIR}/configs/amoebanet-search.yaml --server localhost:{PORT}"
        + (f" --tls-ca {CERTS_DIR}/ca.crt --tls-server-name {ORCHESTRATOR}" if opts.tls_secret else ""),
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors (objects share label dicts) and with multi-line strings as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def render(opts: KubernetesOptions) -> str:
    """The manifests as one YAML stream, deterministic for given options."""
    opts = opts.checked()
    return header(opts) + "---\n" + _dump(manifests(opts))


def render_files(opts: KubernetesOptions, folder: str = "DIR") -> dict[str, str]:
    """{file name: YAML} with one file per component, numbered in the order they are applied."""
    opts = opts.checked()
    return {f"{10 * (i + 1)}-{name}.yaml": header(opts, target=folder) + "---\n" + _dump(docs)
            for i, (name, docs) in enumerate(components(opts))}


@deploy_app.command("kubernetes")
def kubernetes(
    workers: Annotated[int, typer.Option("--workers", help="worker replicas (N >= 1)")] = 4,
    gpus_per_worker: Annotated[int, typer.Option("--gpus-per-worker", help="nvidia.com/gpu limit of each worker; 0: CPU workers on --image, > 0: --gpu-image")] = 0,
    image: Annotated[str, typer.Option("--image", help="image of the migrate Job, the orchestrator and CPU workers (built from Dockerfile)")] = DEFAULT_IMAGE,
    gpu_image: Annotated[str, typer.Option("--gpu-image", help="image of GPU workers (built from Dockerfile.cuda)")] = DEFAULT_GPU_IMAGE,
    evaluator: Annotated[str, typer.Option("--evaluator", help="workers' evaluator: train (Flax), or table (NAS-Bench-201 look-up: a smoke test with no data and no GPU)")] = "train",
    postgres_url: Annotated[str | None, typer.Option("--postgres-url", help="use this external database (postgresql://USER@HOST:PORT/DB, no password) instead of rendering PostgreSQL")] = None,
    postgres_storage: Annotated[str | None, typer.Option("--postgres-storage", help=f"size of the rendered PostgreSQL's volume, a Kubernetes quantity (default {DEFAULT_STORAGE})")] = None,
    postgres_secret: Annotated[str, typer.Option("--postgres-secret", help="Secret whose key 'password' is the database password")] = POSTGRES,
    artifacts: Annotated[str | None, typer.Option("--artifacts", help="artifact store URL (e.g. s3://bucket/path) for the orchestrator and the workers")] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="namespace of every object")] = "amoeba",
    token_secret: Annotated[str, typer.Option("--token-secret", help="Secret whose key 'token' is the shared token (AMOEBA_TOKEN)")] = "amoeba-token",
    tls_secret: Annotated[str | None, typer.Option("--tls-secret", help="Secret with tls.crt, tls.key and ca.crt: the orchestrator serves TLS, workers check it with ca.crt")] = None,
    data_claim: Annotated[str | None, typer.Option("--data-claim", help="PersistentVolumeClaim (ReadWriteMany) the workers share at /data; default: a per-pod emptyDir")] = None,
    out: Annotated[str | None, typer.Option("--out", help="write one file per component into DIR instead of printing")] = None,
) -> None:
    """Print the Kubernetes manifests of a whole cluster: PostgreSQL, a migrate Job, the orchestrator, N workers.

    Apply them with `amoeba deploy kubernetes | kubectl apply -f -` once the namespace and the secrets exist; the comment on top of the output lists the commands. Secret values are never rendered.
    """
    opts = KubernetesOptions(
        workers=workers, gpus_per_worker=gpus_per_worker, image=image, gpu_image=gpu_image, evaluator=evaluator,
        postgres_url=postgres_url, postgres_storage=postgres_storage, postgres_secret=postgres_secret,
        artifacts=artifacts, namespace=namespace, token_secret=token_secret, tls_secret=tls_secret,
        data_claim=data_claim,
    )
    if out is None:
        sys.stdout.write(render(opts))
        return
    folder = Path(out)
    files = render_files(opts, str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    for name in files:
        print(folder / name, file=sys.stderr)


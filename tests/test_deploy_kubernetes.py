"""``amoeba deploy kubernetes`` against the Kubernetes API schemas, the real CLI, the committed manifest and as processes.

No Kubernetes cluster runs in CI. So every rendered object is validated against the API's OpenAPI
schemas (kubernetes-validate, strict: unknown fields fail), every `amoeba` command a container runs is
resolved in the click tree `amoeba` itself runs (a renamed command, flag or variable fails here, as in
tests/test_deploy_compose.py), and the rendered topology runs as local processes: a throwaway
PostgreSQL, the migrate Job's containers, the orchestrator's (with the token) and three workers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
import yaml
from deploy_helpers import load_healthcheck

from cli.deploy import KubernetesOptions, manifests, render

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "deploy" / "kubernetes" / "amoeba.yaml"
IMAGE_ROOT = "/app/"  # WORKDIR of both Dockerfiles

pytestmark = pytest.mark.e2e

# Flag combinations every check runs over; "gpu" is the README's example.
COMBINATIONS: dict[str, list[str]] = {
    "defaults": [],
    "gpu": ["--workers", "8", "--gpus-per-worker", "1"],
    "external-postgres": ["--postgres-url", "postgresql://amoeba@db.example.org:5432/amoeba?sslmode=require",
                          "--postgres-secret", "db-password"],
    "tls-namespace-artifacts": ["--tls-secret", "amoeba-tls", "--namespace", "nas-prod",
                                "--artifacts", "s3://bucket/path"],
    "table-shared-data": ["--evaluator", "table", "--workers", "2", "--data-claim", "amoeba-data",
                          "--postgres-storage", "5Gi", "--image", "registry.example.org/amoeba:0.1.0",
                          "--token-secret", "nas-token"],
}

# Flags and AMOEBA_* variables a manifest may pass although this CLI does not read them: none.
PENDING_FLAGS: dict[tuple[str, ...], set[str]] = {}
PENDING_ENV: set[str] = set()


def _amoeba(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `amoeba ARGS` in-process: (exit code, stdout, stderr)."""
    from cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def _render(capsys: pytest.CaptureFixture[str], flags: list[str]) -> str:
    code, out, err = _amoeba(capsys, "deploy", "kubernetes", *flags)
    assert code == 0, err
    return out


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) for every object that runs pods."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, doc["spec"]["template"]["spec"]


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc, pod in _pods(docs):
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            yield doc, c


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container(docs: list[dict[str, Any]], kind: str, name: str, container: str) -> dict[str, Any]:
    pod = _find(docs, kind, name)["spec"]["template"]["spec"]
    return next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == container)


def _load_healthcheck() -> ModuleType:
    return load_healthcheck("deploy_healthcheck_k8s")


@pytest.fixture(scope="module", params=sorted(COMBINATIONS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[str], list[dict[str, Any]]]:
    from cli.main import main

    flags = COMBINATIONS[request.param]
    # Through the real command (Typer parsing included); capsys is per test, this fixture per module.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit) as exit_info:
        main(["deploy", "kubernetes", *flags])
    assert exit_info.value.code == 0
    return request.param, flags, _docs(buffer.getvalue())


# --- the Kubernetes API schemas ----------------------------------------------------------------------


def _k8s_version() -> str:
    from kubernetes_validate.utils import latest_version

    version = latest_version()
    # A recent Kubernetes: native gRPC probes are GA since 1.27; the pin in pyproject keeps this current.
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), version
    return version


def test_every_object_validates_against_the_kubernetes_api(rendered: tuple[str, list[str], list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    _, _, docs = rendered
    version = _k8s_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert {"Job/amoeba-migrate", "Service/amoeba-orchestrator", "Deployment/amoeba-orchestrator",
            "Deployment/amoeba-worker"} <= set(kinds)


def test_the_schema_check_bites() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    version = _k8s_version()
    worker = _find(manifests(KubernetesOptions()), "Deployment", "amoeba-worker")
    worker["spec"]["template"]["spec"]["containers"][0]["args-typo"] = ["x"]
    with pytest.raises(ValidationError, match="args-typo"):
        kubernetes_validate.validate(worker, version, strict=True)
    worker = _find(manifests(KubernetesOptions()), "Deployment", "amoeba-worker")
    worker["spec"]["replicas"] = "four"
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(worker, version, strict=True)


# --- the commands against the CLI (the click tree `amoeba` runs) ------------------------------------


@pytest.fixture(scope="module")
def cli() -> Any:
    from cli import main as cli_main

    cli_main._register()
    return typer.main.get_command(cli_main.app)


def _resolve(cli: Any, argv: list[str]) -> tuple[Any, tuple[str, ...], list[str]]:
    assert argv[0] == "amoeba", argv
    cmd, path, rest = cli, ("amoeba",), argv[1:]
    while isinstance(getattr(cmd, "commands", None), dict) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in cmd.commands, f"`{' '.join(path)}` has no subcommand {name!r}"
        cmd, path = cmd.commands[name], (*path, name)
    assert not isinstance(getattr(cmd, "commands", None), dict), f"`{' '.join(path)}` is a group"
    return cmd, path, rest


def _check_value(param: Any, value: str) -> None:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None and hasattr(param, "type"):  # a click without Typer's own copy
        param.type.convert(value, param, None)
    elif annotation is int:
        int(value)
    elif annotation is float:
        float(value)


def _check_options(cmd: Any, path: tuple[str, ...], args: list[str]) -> None:
    by_opt = {o: p for p in cmd.params if getattr(p, "param_type_name", "") == "option"
              for o in (*p.opts, *p.secondary_opts)}
    pending = PENDING_FLAGS.get(path, set())
    it = iter(args)
    for token in it:
        assert token.startswith("-"), f"`{' '.join(path)}`: unexpected argument {token!r}"
        flag = token.partition("=")[0]
        param = by_opt.get(flag)
        if param is None and flag in pending:
            next(it, None)  # its value
            continue
        assert param is not None, f"`{' '.join(path)}` has no option {flag}"
        if param.is_flag:
            continue
        value = next(it, None)
        assert value is not None, f"`{' '.join(path)} {flag}` needs a value"
        _check_value(param, value)


def _envvars(cmd: Any) -> set[str]:
    out: set[str] = set()
    for p in cmd.params:
        out |= {p.envvar} if isinstance(p.envvar, str) else set(p.envvar or [])
    return out


def _read_from_environment() -> set[str]:
    """AMOEBA_* variables the packages read directly (os.environ / os.getenv)."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    names: set[str] = set()
    for package in (p.rstrip("*") for p in include):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"""(?:environ\.get\(|environ\[|getenv\()["'](AMOEBA_[A-Z0-9_]+)["']""",
                                    source.read_text(encoding="utf-8")))
    return names


def test_every_command_and_flag_exists_in_the_cli(
    cli: Any, rendered: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    _, _, docs = rendered
    seen = set()
    direct = _read_from_environment()
    for doc, container in _containers(docs):
        argv = [str(t) for t in container.get("command", ["(the image's own)"])]
        if argv[0] != "amoeba":
            continue
        cmd, path, rest = _resolve(cli, argv)
        seen.add(path)
        _check_options(cmd, path, rest)
        env = {e["name"] for e in container.get("env", [])}
        unread = {e for e in env if e.startswith("AMOEBA_")} - _envvars(cmd) - direct - PENDING_ENV
        assert not unread, f"{doc['metadata']['name']}: nothing reads {sorted(unread)}"
        if path != ("amoeba", "migrate"):
            assert "AMOEBA_TOKEN" in env and "AMOEBA_TOKEN" in _envvars(cmd), path
    assert seen == {("amoeba", "migrate"), ("amoeba", "server"), ("amoeba", "worker")}


def test_the_flag_checker_bites(cli: Any) -> None:
    # `amoeba server --artifacts` exists; an unknown flag, a bad value or a flag on the wrong command fails.
    cmd, path, rest = _resolve(cli, ["amoeba", "server", "--artifacts", "s3://b", "--port", "1"])
    _check_options(cmd, path, rest)
    with pytest.raises(AssertionError, match="no option --bogus"):
        _check_options(cmd, path, ["--bogus", "1"])
    with pytest.raises(ValueError):
        _check_options(cmd, path, ["--port", "fifty"])
    worker, wpath, _ = _resolve(cli, ["amoeba", "worker"])
    with pytest.raises(AssertionError, match="no option --artifacts"):
        _check_options(worker, wpath, ["--artifacts", "s3://b"])
    with pytest.raises(AssertionError, match="no subcommand 'kubernetz'"):
        _resolve(cli, ["amoeba", "deploy", "kubernetz"])


def test_probe_scripts_exist_and_take_the_flags_given(rendered: tuple[str, list[str], list[dict[str, Any]]]) -> None:
    _, flags, docs = rendered
    server = _container(docs, "Deployment", "amoeba-orchestrator", "orchestrator")
    port = server["ports"][0]["containerPort"]
    for probe in (server["readinessProbe"], server["livenessProbe"]):
        if "--tls-secret" not in flags:
            assert probe["grpc"] == {"port": port}, "the kubelet's gRPC probe on the standard health service"
            continue
        argv = probe["exec"]["command"]
        assert argv[:2] == ["python", IMAGE_ROOT + "deploy/healthcheck.py"]
        script = (ROOT / argv[1][len(IMAGE_ROOT):]).read_text()
        declared = set(re.findall(r'add_argument\("(--[a-z-]+)"', script))
        assert {a for a in argv[2:] if a.startswith("--")} <= declared
        assert argv[argv.index("--server") + 1] == f"localhost:{port}"


# --- what the manifests say ------------------------------------------------------------------------


def test_topology_wiring(rendered: tuple[str, list[str], list[dict[str, Any]]]) -> None:
    _, flags, docs = rendered
    ns = flags[flags.index("--namespace") + 1] if "--namespace" in flags else "amoeba"
    assert all(d["metadata"]["namespace"] == ns for d in docs)
    assert not any(d["kind"] == "Secret" for d in docs), "secret values are never rendered"
    migrate = _container(docs, "Job", "amoeba-migrate", "migrate")["command"]
    server = _container(docs, "Deployment", "amoeba-orchestrator", "orchestrator")
    worker = _container(docs, "Deployment", "amoeba-worker", "worker")
    url = migrate[migrate.index("--db") + 1]
    assert server["command"][server["command"].index("--db") + 1] == url
    assert ":" not in url.split("://", 1)[1].split("@")[0], "no password in the URL"
    service = _find(docs, "Service", "amoeba-orchestrator")
    address = worker["command"][worker["command"].index("--server") + 1]
    assert address == f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert server["command"][server["command"].index("--port") + 1] == str(server["ports"][0]["containerPort"])
    orchestrator = _find(docs, "Deployment", "amoeba-orchestrator")
    assert service["spec"]["selector"] == orchestrator["spec"]["selector"]["matchLabels"]
    # The token: one Secret, read as AMOEBA_TOKEN by the server and the workers.
    refs = {c["name"]: {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
            for c in (server, worker)}
    token = flags[flags.index("--token-secret") + 1] if "--token-secret" in flags else "amoeba-token"
    assert refs["orchestrator"]["AMOEBA_TOKEN"] == refs["worker"]["AMOEBA_TOKEN"] == {"name": token, "key": "token"}
    if "--postgres-url" in flags:
        assert url == flags[flags.index("--postgres-url") + 1]
        assert not any(d["kind"] == "StatefulSet" for d in docs)
        assert refs["orchestrator"]["PGPASSWORD"]["optional"] is True
    else:
        pg = _find(docs, "StatefulSet", "amoeba-postgres")
        headless = _find(docs, "Service", "amoeba-postgres")
        assert headless["spec"]["clusterIP"] == "None" and pg["spec"]["serviceName"] == "amoeba-postgres"
        assert url == "postgresql://amoeba@amoeba-postgres:5432/amoeba"
        size = flags[flags.index("--postgres-storage") + 1] if "--postgres-storage" in flags else "20Gi"
        claim = pg["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["resources"]["requests"]["storage"] == size
        container = pg["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "postgres:16"
        assert container["volumeMounts"][0]["name"] == claim["metadata"]["name"]
        assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
        password = next(e for e in container["env"] if e["name"] == "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"]
        assert refs["orchestrator"]["PGPASSWORD"] == password
    for _, pod in _pods(docs):
        assert pod["automountServiceAccountToken"] is False
        if pod["containers"][0]["image"] != "postgres:16":
            # Otherwise Kubernetes adds AMOEBA_ORCHESTRATOR_* service variables next to the ones amoeba reads.
            assert pod["enableServiceLinks"] is False
            assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"]


def test_workers_scale_use_gpus_and_get_time_to_release_their_lease(
    rendered: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    _, flags, docs = rendered
    deployment = _find(docs, "Deployment", "amoeba-worker")
    pod = deployment["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    n = int(flags[flags.index("--workers") + 1]) if "--workers" in flags else 4
    g = int(flags[flags.index("--gpus-per-worker") + 1]) if "--gpus-per-worker" in flags else 0
    assert deployment["spec"]["replicas"] == n
    evaluator = worker["command"][worker["command"].index("--evaluator") + 1]
    if g > 0:
        assert worker["resources"]["limits"] == {"nvidia.com/gpu": g}
        assert worker["image"] == "amoeba-cuda:latest" and evaluator == "train"
    else:
        assert "resources" not in worker
        assert worker["image"] == _container(docs, "Deployment", "amoeba-orchestrator", "orchestrator")["image"]
    assert "--wait" in worker["command"], "a Deployment restarts a worker that exits; it waits instead"
    # SIGTERM: the worker cancels at the next training step and releases its lease (compose: 60 s, Slurm: 120 s).
    assert pod["terminationGracePeriodSeconds"] >= 60
    server_pod = _find(docs, "Deployment", "amoeba-orchestrator")["spec"]["template"]["spec"]
    assert server_pod["terminationGracePeriodSeconds"] > 10, "more than `amoeba server --grace`"
    data = worker["command"][worker["command"].index("--data-dir") + 1]
    assert {"name": "AMOEBA_CACHE", "value": f"{data}/cache"} in worker["env"]
    volume = next(v for v in pod["volumes"] if v["name"] == "data")
    if "--data-claim" in flags:
        assert volume["persistentVolumeClaim"]["claimName"] == flags[flags.index("--data-claim") + 1]
    else:
        assert volume["emptyDir"] == {}
    if "--artifacts" in flags:
        url = flags[flags.index("--artifacts") + 1]
        server = _container(docs, "Deployment", "amoeba-orchestrator", "orchestrator")["command"]
        assert server[server.index("--artifacts") + 1] == url
        # Workers learn where weights go from each lease, not from their environment.
        assert all(e["name"] != "AMOEBA_ARTIFACTS" for e in worker["env"])
    else:
        assert not any("artifacts" in json.dumps(d).lower() for d in docs)


def test_tls_from_a_secret() -> None:
    docs = manifests(KubernetesOptions(tls_secret="amoeba-tls").checked())
    server_pod = _find(docs, "Deployment", "amoeba-orchestrator")["spec"]["template"]["spec"]
    server = server_pod["containers"][0]["command"]
    assert server[server.index("--tls-cert") + 1] == "/certs/tls.crt"
    assert server[server.index("--tls-key") + 1] == "/certs/tls.key"
    assert server_pod["volumes"] == [{"name": "tls", "secret": {"secretName": "amoeba-tls", "defaultMode": 0o440}}]
    worker_pod = _find(docs, "Deployment", "amoeba-worker")["spec"]["template"]["spec"]
    worker = worker_pod["containers"][0]["command"]
    assert worker[worker.index("--tls-ca") + 1] == "/certs/ca.crt"
    tls = next(v for v in worker_pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "workers never see the server key"
    plain = manifests(KubernetesOptions())
    assert "tls" not in json.dumps(plain).replace("amoeba-tls", "")


# --- the committed manifest, files, errors, help, README -------------------------------------------


def test_committed_manifest_is_the_default_output(capsys: pytest.CaptureFixture[str]) -> None:
    out = _render(capsys, [])
    assert out == render(KubernetesOptions())
    assert GOLDEN.read_text(encoding="utf-8") == out, (
        "deploy/kubernetes/amoeba.yaml differs from the command's output; regenerate it with "
        "`amoeba deploy kubernetes > deploy/kubernetes/amoeba.yaml`"
    )


def test_output_is_deterministic_and_lists_the_secrets_to_create(capsys: pytest.CaptureFixture[str]) -> None:
    flags = COMBINATIONS["tls-namespace-artifacts"]
    first, second = _render(capsys, flags), _render(capsys, flags)
    assert first == second
    head = [line for line in first.splitlines() if line.startswith("#")]
    text = "\n".join(head)
    assert "amoeba deploy kubernetes --artifacts s3://bucket/path --namespace nas-prod --tls-secret amoeba-tls" in text
    for fragment in ("kubectl create namespace nas-prod", "create secret generic amoeba-token",
                     "create secret generic amoeba-postgres", "create secret generic amoeba-tls",
                     "--tls-ca /certs/ca.crt --tls-server-name amoeba-orchestrator"):
        assert fragment in text, fragment


def test_header_commands_exist(cli: Any) -> None:
    for opts in (KubernetesOptions(), KubernetesOptions(tls_secret="amoeba-tls")):
        for line in render(opts).splitlines():
            if line.startswith("#") and " -- amoeba " in line:
                argv = shlex.split(line.split(" -- ", 1)[1])
                cmd, path, rest = _resolve(cli, argv)
                assert path == ("amoeba", "experiment", "create")
                _check_options(cmd, path, rest)
                assert (ROOT / argv[argv.index("--config") + 1][len(IMAGE_ROOT):]).is_file()


def test_out_writes_one_file_per_component(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _amoeba(capsys, "deploy", "kubernetes", "--out", str(tmp_path / "k8s"))
    assert code == 0 and out == "", err
    files = sorted((tmp_path / "k8s").iterdir())
    assert [f.name for f in files] == ["10-postgres.yaml", "20-migrate.yaml", "30-orchestrator.yaml", "40-worker.yaml"]
    together = [d for f in files for d in _docs(f.read_text())]
    assert together == _docs(render(KubernetesOptions()))
    assert err.split() == [str(f) for f in files]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "two"], "'--workers'"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker must be >= 0"),
        (["--postgres-url", "postgresql://u@db/amoeba", "--postgres-storage", "5Gi"], "not both"),
        (["--postgres-storage", "20 GB"], "Kubernetes quantity"),
        (["--postgres-storage", "0Gi"], "Kubernetes quantity"),
        (["--postgres-url", "mysql://u@db/amoeba"], "postgresql://"),
        (["--postgres-url", "postgresql://u:hunter2@db/amoeba"], "must not contain a password"),
        (["--namespace", "Amoeba_NS"], "DNS-1123 label"),
        (["--namespace", "a" * 64], "DNS-1123 label"),
        (["--tls-secret", "TLS!"], "--tls-secret must be a Kubernetes object name"),
        (["--evaluator", "magic"], "--evaluator must be one of train, table"),
        (["--evaluator", "table", "--gpus-per-worker", "1"], "needs --evaluator train"),
        (["--artifacts", "bucket"], "--artifacts must be a URL"),
        (["--image", ""], "--image must be an image reference"),
    ],
)
def test_bad_flags_are_one_line_errors(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    code, out, err = _amoeba(capsys, "deploy", "kubernetes", *flags)
    assert code == 2 and out == ""
    assert err.startswith("amoeba: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_help_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _amoeba(capsys, "deploy", "kubernetes", "--help")
    assert code == 0
    for flag in ("--workers", "--gpus-per-worker", "--image", "--gpu-image", "--evaluator", "--postgres-url",
                 "--postgres-storage", "--postgres-secret", "--artifacts", "--namespace", "--token-secret",
                 "--tls-secret", "--data-claim", "--out"):
        assert flag in out, flag
    code, out, _ = _amoeba(capsys, "deploy")
    assert code == 0 and "kubernetes" in out


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Run on Kubernetes")
    end = min((i for i in (text.find("\n## ", start), text.find("\n### ", start + 1)) if i != -1), default=len(text))
    return text[start:end]


def test_readme_shows_the_commands_a_user_types(cli: Any) -> None:
    section = _readme_section()
    assert "amoeba deploy kubernetes --workers 8 --gpus-per-worker 1" in section
    assert "kubernetes-validate" in section
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split(" | ", 1)[0].strip()
            if line.startswith("amoeba "):
                commands.append(shlex.split(line))
            elif " -- amoeba " in line:
                commands.append(shlex.split(line.split(" -- ", 1)[1]))
    assert len(commands) >= 2
    for argv in commands:
        if ">" in argv:  # `amoeba deploy kubernetes > FILE`
            argv = argv[: argv.index(">")]
        cmd, path, rest = _resolve(cli, argv)
        _check_options(cmd, path, rest)


# --- the same topology as local processes ----------------------------------------------------------

C = 24
REPLICAS = 3
TOKEN = "kubernetes-topology-token"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.postgres
def test_kubernetes_topology_runs_as_processes(pg_server: Any, tmp_path: Path) -> None:
    """PostgreSQL, the migrate Job, the orchestrator with its token and three worker replicas, from the manifests.

    Only what a cluster provides is mapped onto this machine: the database URL -> a throwaway PostgreSQL,
    the orchestrator Service -> a loopback port, /data -> a temp folder, Secrets -> test values.
    """
    opts = KubernetesOptions(workers=REPLICAS, evaluator="table").checked()
    docs = _docs(render(opts))
    url = pg_server.database()  # empty and unmigrated, like a fresh volume
    port = _free_port()
    data = tmp_path / "data"
    data.mkdir()
    secrets = {("amoeba-token", "token"): TOKEN, ("amoeba-postgres", "password"): "unused-with-trust-auth"}
    # libpq's form: pg_isready reads it too, and amoeba drives it with psycopg either way.
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://")

    def local(token: str) -> str:
        token = token.replace(opts.database_url, libpq_url)
        for address in (opts.server_address, "localhost:50051"):  # the Service, and the pod itself (exec)
            token = token.replace(address, f"127.0.0.1:{port}")
        if token == "/data" or token.startswith("/data/"):
            return str(data) + token[len("/data"):]
        return {"0.0.0.0": "127.0.0.1", "50051": str(port)}.get(token, token)

    def argv(container: Mapping[str, Any]) -> list[str]:
        cmd = [local(str(t)) for t in container["command"]]
        if cmd[0] == "amoeba":
            return [sys.executable, "-m", "cli.main", *cmd[1:]]
        if cmd[0] == "python":
            return [sys.executable, *cmd[1:]]
        return cmd

    def env(container: Mapping[str, Any]) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith(("AMOEBA_", "PG"))}
        out["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
        out["PATH"] = str(pg_server.bindir) + os.pathsep + os.environ.get("PATH", "")  # pg_isready
        for e in container.get("env", []):
            if "value" in e:
                out[e["name"]] = local(e["value"])
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                out[e["name"]] = secrets[(ref["name"], ref["key"])]
        return out

    def run(container: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv(container), env=env(container), cwd=tmp_path, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120, check=False)

    # The migrate Job: wait for PostgreSQL, then migrate. The orchestrator's init container is started
    # first and must be seen waiting for the schema (its first line), then finish once migrate did.
    wait_pg = _container(docs, "Job", "amoeba-migrate", "wait-for-postgres")
    assert run(wait_pg).returncode == 0
    wait_schema = _container(docs, "Deployment", "amoeba-orchestrator", "wait-for-schema")
    waiting = subprocess.Popen(argv(wait_schema), env=env(wait_schema), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert waiting.stdout is not None
        first = waiting.stdout.readline()
        assert first.startswith("waiting for amoeba migrate: database at no revision"), first + waiting.stderr.read()
        migrated = run(_container(docs, "Job", "amoeba-migrate", "migrate"))
        assert migrated.returncode == 0, migrated.stderr
        assert waiting.wait(timeout=60) == 0
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(10)

    orchestrator = _container(docs, "Deployment", "amoeba-orchestrator", "orchestrator")
    assert env(orchestrator)["AMOEBA_TOKEN"] == TOKEN
    server = subprocess.Popen(argv(orchestrator), env=env(orchestrator), cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    workers: list[subprocess.Popen[str]] = []
    try:
        # The readiness probe: the standard health service on the container port, without the token.
        probe = orchestrator["readinessProbe"]["grpc"]
        healthcheck = _load_healthcheck()
        deadline = time.monotonic() + 60
        while not healthcheck.check(f"127.0.0.1:{local(str(probe['port']))}", timeout=1.0)[0]:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the orchestrator never became ready"
            time.sleep(0.1)

        # The experiment, as the header says: `kubectl exec deploy/amoeba-orchestrator -- amoeba experiment create`
        # in the orchestrator's container (its environment), with a small table config.
        config = tmp_path / "k8s.yaml"
        config.write_text(f"name: k8s\nspace: nb201\npopulation: 6\nsample: 3\nevaluations: {C}\nseed: 5\n")
        line = next(x for x in render(opts).splitlines() if " -- amoeba experiment create " in x)
        create = [local(t) for t in shlex.split(line.split(" -- ", 1)[1])]
        create[create.index("--config") + 1] = str(config)
        created = run({**orchestrator, "command": [*create, "--json"]})
        assert created.returncode == 0, created.stderr

        # Replicas of the worker Deployment. Each may do C/REPLICAS evaluations: as C are needed, every
        # replica does exactly its share, whichever starts first or runs fastest.
        spec = _container(docs, "Deployment", "amoeba-worker", "worker")
        share = C // REPLICAS
        workers = [subprocess.Popen([*argv(spec), "--json", "--worker-id", f"amoeba-worker-{k}",
                                     "--max-evaluations", str(share)],
                                    env=env(spec), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, stdin=subprocess.DEVNULL)
                   for k in range(REPLICAS)]
        summaries = []
        for w in workers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
        assert [s["evaluated"] for s in summaries] == [share] * REPLICAS, summaries
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(10)
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0, server.stderr.read() if server.stderr else ""

    import db
    from orchestrator.service import OrchestratorService

    store = db.open_store(url)
    try:
        doc = OrchestratorService(store).status("k8s")
    finally:
        store.close()
    assert doc["completed"] == C and doc["state"] == "done" and doc["failed"] == 0
    assert {w["worker_id"] for w in doc["workers"]} == {f"amoeba-worker-{k}" for k in range(REPLICAS)}

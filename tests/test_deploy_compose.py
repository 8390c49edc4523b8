"""docker-compose.yml against the real CLI and the repository: commands, flags, env, files, health, order.

No Docker engine runs in CI, so this reads the compose files the way Compose does (variable
interpolation, YAML anchors, the CUDA override merged on top) and checks every `amoeba` command
against the click command tree that `amoeba` itself runs: a renamed command, flag or environment
variable fails here.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import re
import subprocess
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from deploy_helpers import (
    COMPOSE,
    CUDA_OVERRIDE,
    ENV,
    IMAGE_ROOT,
    ROOT,
    InterpolationError,
    as_list,
    interpolate,
    load,
)

pytestmark = pytest.mark.e2e


# Typer may bring its own copy of click, so the command tree is read by shape: groups have
# `commands`, parameters have `opts`, `envvar`, `required`, `is_flag`.
Command = Any


@pytest.fixture(scope="module")
def cli() -> Command:
    from cli import main as cli_main

    cli_main._register()
    group = typer.main.get_command(cli_main.app)
    assert hasattr(group, "commands")
    return group


def _is_group(cmd: Command) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _check_value(param: Any, value: str) -> None:
    """Numbers parse and choices are among the allowed ones (typer keeps the Python annotation)."""
    if hasattr(param, "type") and hasattr(param.type, "convert"):
        param.type.convert(value, param, None)
        return
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is int:
        int(value)
    elif annotation is float:
        float(value)
    elif typing.get_origin(annotation) is typing.Literal:
        assert value in typing.get_args(annotation), f"{param.opts}: {value!r} not in {typing.get_args(annotation)}"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = [str(e.value) for e in annotation]
        assert value in allowed, f"{param.opts}: {value!r} not in {allowed}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def cuda() -> dict[str, Any]:
    return load(COMPOSE, CUDA_OVERRIDE)


def resolve(cli: Command, argv: list[str]) -> tuple[Command, list[str], list[str]]:
    """The subcommand an `amoeba ...` argv runs, its path and the remaining arguments."""
    assert argv and argv[0] == "amoeba", f"not an amoeba command: {argv}"
    cmd = cli
    path = ["amoeba"]
    rest = argv[1:]
    while _is_group(cmd) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = cmd.commands.get(name)
        assert sub is not None, f"`{' '.join(path)}` has no subcommand {name!r} (has: {sorted(cmd.commands)})"
        cmd, path = sub, [*path, name]
    assert not _is_group(cmd), f"`{' '.join(path)}` is a group, not a command"
    return cmd, path, rest


def check_options(cmd: Command, path: list[str], args: list[str], environment: Mapping[str, str]) -> None:
    """Every flag exists, takes the value given (ints, choices), and every required option is satisfied."""
    by_opt = {o: p for p in cmd.params if _is_option(p) for o in (*p.opts, *p.secondary_opts)}
    given: set[str] = set()
    it: Iterator[str] = iter(args)
    for token in it:
        assert token.startswith("-"), f"`{' '.join(path)}`: unexpected positional argument {token!r}"
        flag, _, inline = token.partition("=")
        param = by_opt.get(flag)
        assert param is not None, f"`{' '.join(path)}` has no option {flag} (has: {sorted(by_opt)})"
        assert param.name is not None
        given.add(param.name)
        if param.is_flag:
            continue
        value = inline or next(it, None)
        assert value is not None, f"`{' '.join(path)} {flag}` needs a value"
        _check_value(param, value)
    for p in cmd.params:
        if p.required and p.name not in given:
            envvars = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar or [])
            assert any(environment.get(e) for e in envvars), f"`{' '.join(path)}` misses required {p.opts}"


def envvars_of(cmd: Command) -> set[str]:
    out: set[str] = set()
    for p in cmd.params:
        if isinstance(p.envvar, str):
            out.add(p.envvar)
        elif p.envvar:
            out.update(p.envvar)
    return out


def read_from_environment() -> set[str]:
    """AMOEBA_* variables the package reads directly (os.environ / os.getenv), not through an option."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    names: set[str] = set()
    for package in (p.rstrip("*") for p in include):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"""(?:environ\.get\(|environ\[|getenv\()["'](AMOEBA_[A-Z0-9_]+)["']""",
                                    source.read_text(encoding="utf-8")))
    return names


def repo_path(image_path: str) -> Path:
    assert image_path.startswith(IMAGE_ROOT), image_path
    return ROOT / image_path[len(IMAGE_ROOT):]


def dockerignored(rel: str) -> bool:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    # Docker matches a pattern against the path and each of its parent folders from the context root;
    # a leading **/ matches at any depth.
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        if pat.startswith("**/"):
            tails = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
            if any(fnmatch.fnmatch(t, pat[3:]) for t in tails):
                return True
        elif any(fnmatch.fnmatch(pre, pat.lstrip("/")) for pre in prefixes):
            return True
    return False


def _env_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- the services ------------------------------------------------------------------------------------


def test_services_and_their_images(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "migrate", "orchestrator", "worker", "experiment"}
    for name, svc in compose["services"].items():
        if name == "postgres":
            assert svc["image"].startswith("postgres:16")
            continue
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
        assert svc.get("init") is True, f"{name}: signals must reach amoeba (init: true)"


@pytest.mark.parametrize("service", ["migrate", "orchestrator", "worker", "experiment"])
def test_every_command_is_a_real_amoeba_command(cli: Command, compose: dict[str, Any], service: str) -> None:
    svc = compose["services"][service]
    cmd, path, rest = resolve(cli, as_list(svc["command"]))
    expected = {"migrate": ["amoeba", "migrate"], "orchestrator": ["amoeba", "server"],
                "worker": ["amoeba", "worker"], "experiment": ["amoeba", "experiment", "create"]}[service]
    assert path == expected
    environment = _env_of(svc)
    check_options(cmd, path, rest, environment)
    # Every AMOEBA_* variable handed to the container is read by the command or by its health check.
    readers = envvars_of(cmd) | read_from_environment()
    if "healthcheck.py" in " ".join(map(str, svc.get("healthcheck", {}).get("test", []))):
        readers |= set(re.findall(r'_env\("([A-Z_]+)"\)', (ROOT / "deploy" / "healthcheck.py").read_text()))
    unread = {k for k in environment if k.startswith("AMOEBA_")} - readers
    assert not unread, f"{service}: nothing reads {sorted(unread)}"


@pytest.mark.parametrize("service", ["orchestrator", "worker", "experiment"])
def test_token_is_required_and_reaches_the_command(cli: Command, service: str) -> None:
    with pytest.raises(InterpolationError, match="AMOEBA_TOKEN"):
        load(COMPOSE, env={})
    svc = load(COMPOSE)["services"][service]
    assert _env_of(svc)["AMOEBA_TOKEN"] == ENV["AMOEBA_TOKEN"]
    cmd, _, _ = resolve(cli, as_list(svc["command"]))
    assert "AMOEBA_TOKEN" in envvars_of(cmd), f"{service}: the command must read its token from AMOEBA_TOKEN"


def test_tls_is_off_by_default_and_on_from_the_environment(cli: Command) -> None:
    plain = _env_of(load(COMPOSE)["services"]["orchestrator"])
    assert all(plain[k] == "" for k in ("AMOEBA_TLS_CERT", "AMOEBA_TLS_KEY", "AMOEBA_TLS_CLIENT_CA"))
    tls_env = {**ENV, "AMOEBA_TLS_CERT": "/certs/server.crt", "AMOEBA_TLS_KEY": "/certs/server.key",
               "AMOEBA_TLS_CA": "/certs/ca.crt"}
    services = load(COMPOSE, env=tls_env)["services"]
    server = services["orchestrator"]
    assert _env_of(server)["AMOEBA_TLS_CERT"] == "/certs/server.crt"
    cmd, _, _ = resolve(cli, as_list(server["command"]))
    assert {"AMOEBA_TLS_CERT", "AMOEBA_TLS_KEY", "AMOEBA_TLS_CLIENT_CA"} <= envvars_of(cmd)
    for name in ("orchestrator", "worker", "experiment"):
        assert any(v.endswith(":/certs:ro") for v in services[name]["volumes"]), name
        assert _env_of(services[name])["AMOEBA_TLS_CA"] == "/certs/ca.crt", name
    assert (ROOT / "deploy" / "certs").is_dir()


def test_postgres_has_a_volume_and_a_health_check(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert any(v.startswith("pgdata:") and v.endswith("/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pgdata" in compose["volumes"]
    test = " ".join(pg["healthcheck"]["test"])
    assert "pg_isready" in test and "-U amoeba" in test
    env = _env_of(pg)
    url = as_list(compose["services"]["migrate"]["command"])[-1]
    assert url == f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    assert url in as_list(compose["services"]["orchestrator"]["command"])


def test_start_order_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    want = {
        "migrate": {"postgres": "service_healthy"},
        "orchestrator": {"postgres": "service_healthy", "migrate": "service_completed_successfully"},
        "worker": {"orchestrator": "service_healthy"},
        "experiment": {"orchestrator": "service_healthy"},
    }
    for name, deps in want.items():
        assert {k: v["condition"] for k, v in services[name]["depends_on"].items()} == deps, name
        for dep, cond in deps.items():
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it needs a check"
    assert services["migrate"]["restart"] == "no"
    probe = as_list(services["orchestrator"]["healthcheck"]["test"])
    assert probe[0] == "CMD" and probe[1] == "python"
    script = repo_path(probe[2])
    assert script == ROOT / "deploy" / "healthcheck.py" and script.is_file()
    port = as_list(services["orchestrator"]["command"])
    assert probe[probe.index("--server") + 1] == f"localhost:{port[port.index('--port') + 1]}"
    assert services["experiment"]["profiles"] == ["setup"]  # on demand, so `up` never re-creates it


def test_workers_scale_and_share_a_data_volume(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs replicas that do not clash"
    args = as_list(worker["command"])
    server = compose["services"]["orchestrator"]
    assert args[args.index("--server") + 1] == "orchestrator:" + as_list(server["command"])[-1]
    data = args[args.index("--data-dir") + 1]
    assert f"amoeba-data:{data}" in worker["volumes"] and "amoeba-data" in compose["volumes"]
    assert _env_of(worker)["AMOEBA_CACHE"].startswith(data + "/"), "downloads and the JAX cache on the volume"
    # A host folder replaces the named volume when the user points AMOEBA_DATA_DIR at one.
    hosted = load(COMPOSE, env={**ENV, "AMOEBA_DATA_DIR": "/srv/datasets"})["services"]["worker"]
    assert f"/srv/datasets:{data}" in hosted["volumes"]
    assert "deploy" not in worker, "the CPU compose file must run on hosts without GPUs"


def test_cuda_override_reserves_gpus_and_gives_each_replica_one(cuda: dict[str, Any]) -> None:
    worker = cuda["services"]["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.cuda" and (ROOT / "Dockerfile.cuda").is_file()
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    entry = as_list(worker["entrypoint"])
    script = repo_path(entry[0])
    assert script.is_file() and os.access(script, os.X_OK)
    lock_dir = _env_of(worker)["AMOEBA_GPU_LOCK_DIR"]
    assert any(isinstance(v, str) and v.split(":")[0] in cuda["volumes"] and v.endswith(":" + lock_dir)
               for v in worker["volumes"]), "GPU locks live in a per-host named volume"
    assert any(v.startswith("amoeba-data:") for v in worker["volumes"]), "the override keeps the data volume"
    assert as_list(worker["command"])[:2] == ["amoeba", "worker"]
    assert lock_dir.startswith("/home/amoeba/") and "/home/amoeba/gpu-locks" in (ROOT / "Dockerfile.cuda").read_text()
    assert "deploy" not in cuda["services"]["orchestrator"]


# --- files the containers use ------------------------------------------------------------------------


def _image_paths(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.startswith(IMAGE_ROOT):
            found.add(v)

    for svc in doc["services"].values():
        walk({k: svc.get(k) for k in ("command", "entrypoint", "healthcheck")})
    return found


def test_every_referenced_file_exists_and_enters_the_image(cuda: dict[str, Any], compose: dict[str, Any]) -> None:
    paths = _image_paths(cuda) | _image_paths(compose)
    assert IMAGE_ROOT + "deploy/healthcheck.py" in paths and IMAGE_ROOT + "deploy/gpu-worker.sh" in paths
    assert any(p.startswith(IMAGE_ROOT + "configs/") for p in paths), "the experiment service's config"
    for p in paths:
        rel = p[len(IMAGE_ROOT):]
        assert (ROOT / rel).is_file(), f"{p}: no {rel} in the repository"
        assert not dockerignored(rel), f"{p}: .dockerignore keeps {rel} out of the image"
    for svc in cuda["services"].values():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).is_dir(), f"bind mount source {src} is missing"


def test_dockerfiles_install_the_project_from_pyproject() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (ROOT / name).read_text()
        assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.M), name
        assert "COPY pyproject.toml README.md ./" in text and "pip install --no-deps ." in text, name
        assert "WORKDIR " + IMAGE_ROOT.rstrip("/") in text, name
        assert re.search(r"^USER amoeba$", text, flags=re.M), f"{name}: run as a non-root user"
    assert "jax[cuda12]" in (ROOT / "Dockerfile.cuda").read_text()
    # What the image needs is not ignored: the metadata and every package the wheel includes.
    for rel in ("pyproject.toml", "README.md", "deploy/healthcheck.py", "deploy/gpu-worker.sh"):
        assert not dockerignored(rel), rel
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert (ROOT / package).is_dir(), package
        assert not dockerignored(package + "/__init__.py"), package
    for secret in (".venv/bin/python", ".git/config", "deploy/certs/server.key", "ui/__pycache__/status.cpython-311.pyc",
                   "orchestrator/__pycache__/x", "amoeba.db", "amoeba.db-wal"):
        assert dockerignored(secret), secret
    assert not dockerignored("tables/data/x.csv") and not dockerignored("ui/status.py")


# --- the per-replica GPU claim -----------------------------------------------------------------------


def test_gpu_worker_gives_each_replica_its_own_gpu(tmp_path: Path) -> None:
    script = str(ROOT / "deploy" / "gpu-worker.sh")
    env = {**os.environ, "AMOEBA_GPU_COUNT": "2", "AMOEBA_GPU_LOCK_DIR": str(tmp_path / "locks")}
    hold = ["sh", "-c", 'echo "gpu=$CUDA_VISIBLE_DEVICES"; read line']
    procs = [subprocess.Popen([script, *hold], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    try:
        seen = []
        for p in procs:
            assert p.stdout is not None
            seen.append(p.stdout.readline().strip())
        assert sorted(seen) == ["gpu=0", "gpu=1"]
        third = subprocess.run([script, *hold], env=env, capture_output=True, text=True, input="", timeout=10)
        assert third.returncode == 1 and "all 2 GPUs x 1 slots are taken" in third.stderr
    finally:
        for p in procs:
            p.communicate(input="\n", timeout=10)
    # Their exit released the locks.
    again = subprocess.run([script, "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"], env=env, capture_output=True,
                           text=True, timeout=10)
    assert again.returncode == 0 and again.stdout.strip() == "0"
    none = subprocess.run([script, "true"], env={**env, "AMOEBA_GPU_COUNT": "0"}, capture_output=True, text=True)
    assert none.returncode == 1 and none.stderr.startswith("gpu-worker: error: no NVIDIA GPU")


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|$$HOME|${SET}", env) == "x|d||d|$HOME|x"
    with pytest.raises(InterpolationError, match="EMPTY: need it"):
        interpolate("${EMPTY:?need it}", env)
    assert interpolate("${EMPTY?need it}", env) == ""


def test_the_command_checker_catches_wrong_commands_flags_and_values(cli: Command) -> None:
    # Against a command that exists from the start, so the checker itself is known to bite.
    cmd, path, rest = resolve(cli, ["amoeba", "bench", "nb201", "--runs", "5", "--json", "-P", "20"])
    assert path == ["amoeba", "bench", "nb201"]
    check_options(cmd, path, rest, {})
    with pytest.raises(AssertionError, match="no option --rounds"):
        check_options(cmd, path, ["--rounds", "5"], {})
    with pytest.raises(ValueError):
        check_options(cmd, path, ["--runs", "five"], {})
    with pytest.raises(AssertionError, match="needs a value"):
        check_options(cmd, path, ["--runs"], {})
    with pytest.raises(AssertionError, match="no subcommand 'nb301'"):
        resolve(cli, ["amoeba", "bench", "nb301"])
    with pytest.raises(AssertionError, match="is a group"):
        resolve(cli, ["amoeba", "bench"])


def test_slurm_script_runs_the_same_worker_command(cli: Command) -> None:
    import shlex

    script = ROOT / "deploy" / "slurm-workers.sbatch"
    assert os.access(script, os.X_OK)
    text = script.read_text().replace("\\\n", " ")
    line = next(raw for raw in text.splitlines() if raw.startswith("srun "))
    argv = [interpolate(tok, {"AMOEBA": "amoeba", "AMOEBA_SERVER": "head:50051", "HOME": "/home/u"})
            for tok in shlex.split(line)]
    cmd, path, rest = resolve(cli, argv[argv.index("amoeba"):])
    assert path == ["amoeba", "worker"]
    check_options(cmd, path, rest, {"AMOEBA_TOKEN": "t"})
    assert "export AMOEBA_TOKEN" in text and "AMOEBA_TOKEN" in envvars_of(cmd)


def test_several_replicas_share_one_gpu_with_a_bounded_share_of_its_memory(tmp_path: Path) -> None:
    script = ROOT / "deploy" / "gpu-worker.sh"
    env = {**os.environ, "AMOEBA_GPU_LOCK_DIR": str(tmp_path), "AMOEBA_GPU_COUNT": "1", "AMOEBA_WORKERS_PER_GPU": "2"}
    holders = [subprocess.Popen([str(script), "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES $XLA_PYTHON_CLIENT_MEM_FRACTION"; read x'],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        seen = sorted(p.stdout.readline().strip() for p in holders if p.stdout is not None)
        assert seen == ["0 0.450", "0 0.450"]
        third = subprocess.run([str(script), "true"], env=env, capture_output=True, text=True, timeout=30, check=False)
        assert third.returncode == 1 and "all 1 GPUs x 2 slots are taken" in third.stderr
    finally:
        for p in holders:
            p.communicate("\n", timeout=30)
    bad = subprocess.run([str(script), "true"], env={**env, "AMOEBA_WORKERS_PER_GPU": "0"}, capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "positive integer" in bad.stderr


def test_slurm_tasks_run_k_workers_on_their_gpu() -> None:
    share = ROOT / "deploy" / "share-gpu.sh"
    out = subprocess.run([str(share), "sh", "-c", 'echo "copy $XLA_PYTHON_CLIENT_MEM_FRACTION"'], capture_output=True,
                         text=True, timeout=30, check=True, env={**os.environ, "AMOEBA_WORKERS_PER_GPU": "3"})
    assert out.stdout.split("\n")[:3] == ["copy 0.300"] * 3
    alone = subprocess.run([str(share), "sh", "-c", 'echo "${XLA_PYTHON_CLIENT_MEM_FRACTION:-unset}"'],
                           capture_output=True, text=True, timeout=30, check=True,
                           env={k: v for k, v in os.environ.items() if k != "AMOEBA_WORKERS_PER_GPU"})
    assert alone.stdout.strip() == "unset"
    assert "share-gpu.sh" in (ROOT / "deploy" / "slurm-workers.sbatch").read_text()


def test_amoeba_up_shares_each_gpu_between_k_workers() -> None:
    from cli.errors import UserError
    from cli.up import shared_accelerators

    gpus = [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    assert shared_accelerators(gpus, 1) == gpus
    shared = shared_accelerators(gpus, 3)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in shared] == ["0", "0", "0", "1", "1", "1"]
    assert {e["XLA_PYTHON_CLIENT_MEM_FRACTION"] for e in shared} == {"0.300"}
    with pytest.raises(UserError, match="TPU chip serves one process"):
        shared_accelerators([{"TPU_VISIBLE_CHIPS": "0"}], 2)

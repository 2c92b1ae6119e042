"""The Docker images' install steps, run here without Docker.

No container engine is available in CI, so each Dockerfile is parsed and its Python
install commands (the ``uv sync`` / ``uv pip install`` parts of its RUN lines) run as
written, with the Dockerfile's ARG and ENV values, into a fresh ``uv venv`` in tmp_path.
The CPU image and the add-on are installed for real (from uv's cache; PyPI when it is
cold) and the result must start and import onnxruntime. The GPU images' 250 MB
onnxruntime-gpu wheels are not installed: their lock resolution is checked instead, and
their base images against the CUDA, cuDNN and TensorRT that the locked wheel was built for.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fastkokoro_wyoming.config import env_name, key_paths, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ADDON = ROOT / "addon"
INSTALL = re.compile(r"^(?:uv (?:sync|pip install)|(?:python3? -m )?pip install)\b")
# Dockerfile ENV that would make a test install slow or uncached; the rest is kept.
NOT_IN_TESTS = ("UV_COMPILE_BYTECODE", "UV_LINK_MODE", "UV_NO_CACHE", "UV_PYTHON_INSTALL_DIR")
# Providers each image's environment must configure.
PROVIDERS = {
    "Dockerfile.cpu": ("cpu",),
    "Dockerfile.cuda": ("cuda", "cpu"),
    "Dockerfile.tensorrt": ("tensorrt", "cuda", "cpu"),
}
# TensorRT version the locked onnxruntime-gpu's TensorRT provider was compiled against: the
# NV_TENSORRT_VERSION it passes to createInferBuilder_INTERNAL (objdump -d
# onnxruntime/capi/libonnxruntime_providers_tensorrt.so; 0x18c19 = 101401 = 10.14.1).
TRT_BUILT_WITH = {"1.31.1": "10.14.1"}
UBUNTU_PYTHON = {"22.04": "3.10", "24.04": "3.12"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # ARG defaults and ENV

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            base = _expand(parts[0], global_args)
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
            continue
        target = stages[-1].variables if stages else global_args
        if keyword == "ARG":
            key, has_default, default = args.partition("=")
            if has_default:
                target[key] = default.strip('"')
            elif key in global_args:
                target[key] = global_args[key]
        elif keyword == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                target[key] = _expand(value, {**os.environ, **target})
        if stages:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def _expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), text
    )


def install_commands(stage: Stage) -> list[str]:
    """The Python package installs of a stage's RUN lines, in order."""
    out = []
    for run in stage.all("RUN"):
        run = re.sub(r"^(?:--\w+=\S+\s+)+", "", run)  # --mount=type=cache,...
        out += [c.strip() for c in run.split("&&") if INSTALL.match(c.strip())]
    return out


def expanded_args(command: str, variables: dict[str, str]) -> list[str]:
    """The argument list the shell hands to the command (ARG expansion, loops, quoting)."""
    shell = f'{command.split()[0]}() {{ printf "%s\\n" "$@"; }}; {command}'
    env = {**os.environ, **variables}
    result = subprocess.run(
        ["bash", "-c", shell], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def extras(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--extra"]


def uv_exe() -> str:
    uv = shutil.which("uv")
    if uv is None:
        if os.environ.get("FASTKOKORO_ALLOW_SKIP") == "1":
            pytest.skip("uv is not on PATH")
        pytest.fail("uv is not on PATH (CI installs it; pip install uv)")
    return uv


def builder(path: Path) -> Stage:
    _, stages = parse_dockerfile(path)
    return next(s for s in stages if s.name == "builder")


def runtime(path: Path) -> Stage:
    return parse_dockerfile(path)[1][-1]


def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return next(p["version"] for p in lock["package"] if p["name"] == name)


def install_env(venv: Path, stage: Stage) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTKOKORO_", "VIRTUAL"))}
    env.update({k: v for k, v in stage.variables.items() if k not in NOT_IN_TESTS})
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=str(venv / "bin" / "python"))
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    return env


def check_venv(venv: Path, wanted_extras: list[str], image_env: dict[str, str]) -> None:
    """What the image needs from its venv: the entry point, onnxruntime, the extras."""
    bin_dir = venv / "bin"
    help_run = subprocess.run(
        [str(bin_dir / "fastkokoro-wyoming"), "--help"], capture_output=True, text=True
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "serve" in help_run.stdout
    probe = (
        "import importlib.util, onnxruntime, fastkokoro_wyoming\n"
        "print(fastkokoro_wyoming.__file__)\n"
        "print('CPUExecutionProvider' in onnxruntime.get_available_providers())\n"
        "print(importlib.util.find_spec('pytest') is None)\n"
    )
    probe += "".join(f"import {m}\n" for m in extra_modules(wanted_extras))
    # the image's FASTKOKORO_* settings load with the installed package
    probe += "from fastkokoro_wyoming.config import load_config\nload_config()\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}
    env.update({k: v for k, v in image_env.items() if k.startswith("FASTKOKORO_")})
    result = subprocess.run(  # not from the checkout: python -c puts the cwd on sys.path
        [str(bin_dir / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=venv.parent,
    )
    assert result.returncode == 0, result.stderr
    module_file, has_cpu, no_dev = result.stdout.split()[:3]
    assert Path(module_file).is_relative_to(venv), "installed, not editable from the checkout"
    assert has_cpu == "True" and no_dev == "True"


def extra_modules(names: list[str]) -> list[str]:
    table = {"cpu": [], "zh": ["jieba", "pypinyin"], "ja": ["pyopenjtalk", "unidic_lite"]}
    return [m for name in names for m in table[name]]


# --- what every image promises -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_runtime_stage_conventions(name):
    path = DOCKER / name
    _, stages = parse_dockerfile(path)
    build, run = builder(path), stages[-1]
    assert build.base == run.base, "the venv's interpreter link needs the same base image"
    assert build.variables["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    assert "--from=builder /app/.venv /app/.venv" in run.all("COPY")
    assert run.all("USER") and run.all("USER")[-1] not in ("root", "0")
    assert set(" ".join(run.all("EXPOSE")).split()) == {"8880", "10210"}
    assert run.all("VOLUME") == ["/data"]
    assert run.all("ENTRYPOINT") == ['["fastkokoro-wyoming"]']
    (health,) = run.all("HEALTHCHECK")
    assert "http://127.0.0.1:%s/health" in health and "start-period" in health
    assert "curl" not in health
    env = run.variables
    assert env["FASTKOKORO_ENGINE_MODEL_CACHE_DIR"] == "/data"
    assert env["HF_HOME"] == "/data/hf"
    valid = {env_name(p) for p in key_paths()}
    settings = {k: v for k, v in env.items() if k.startswith("FASTKOKORO_")}
    assert set(settings) <= valid
    cfg = load_config(environ=settings)
    assert cfg.engine.runtime.providers == PROVIDERS[name]
    assert (cfg.http.port, cfg.wyoming.port) == (8880, 10210)


def test_dockerignore_admits_what_the_dockerfiles_copy():
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]

    def ignored(rel: str) -> bool:
        verdict = False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
                verdict = not negate
        return verdict

    assert ignored(".venv/bin/python") and ignored(".git/HEAD") and ignored("tests/conftest.py")
    for name in PROVIDERS:
        for copy in builder(DOCKER / name).all("COPY"):
            if copy.startswith("--from"):
                continue
            for src in copy.split()[:-1]:
                files = (
                    [src]
                    if (ROOT / src).is_file()
                    else [
                        str(p.relative_to(ROOT))
                        for p in (ROOT / src).rglob("*.py")
                        if "__pycache__" not in p.parts
                    ]
                )
                assert files, src
                assert [f for f in files if ignored(f)] == [], f"{name}: COPY {src}"


# --- CPU image: installed for real ---------------------------------------------------------


def test_cpu_image_install_steps_give_a_working_venv(tmp_path):
    uv = uv_exe()
    path = DOCKER / "Dockerfile.cpu"
    stage = builder(path)
    commands = install_commands(stage)
    assert len(commands) == 2, "dependencies first, then the project"
    for command in commands:
        args = expanded_args(command, stage.variables)
        assert args[:2] == ["sync", "--frozen"] and "--no-dev" in args
        assert "cpu" in extras(args) and "gpu" not in extras(args)
    assert "--no-editable" in expanded_args(commands[-1], stage.variables)
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    env = install_env(venv, stage)
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, check=True, timeout=900)
    check_venv(venv, extras(expanded_args(commands[-1], stage.variables)), runtime(path).variables)


# --- add-on: installed for real from its requirements.txt and a freshly built wheel -------


def test_addon_install_steps_give_a_working_venv(tmp_path):
    uv = uv_exe()
    stage = parse_dockerfile(ADDON / "Dockerfile")[1][-1]
    commands = install_commands(stage)
    assert len(commands) == 1
    (command,) = commands
    context = tmp_path / "context"  # what the Dockerfile copies to /tmp/fastkokoro
    (context / "wheels").mkdir(parents=True)
    shutil.copy(ADDON / "requirements.txt", context)
    subprocess.run(
        [uv, "build", "-q", "--wheel", "--out-dir", str(context / "wheels")],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    local = command.replace("/opt/venv", str(venv)).replace("/tmp/fastkokoro", str(context))
    assert local != command
    env = install_env(venv, stage)
    subprocess.run(["bash", "-c", local], cwd=tmp_path, env=env, check=True, timeout=900)
    spec = next(a for a in expanded_args(command, stage.variables) if a.startswith("fastkokoro"))
    wanted = re.search(r"\[([\w,]+)\]", spec).group(1).split(",")
    image_env = {"FASTKOKORO_ENGINE_RUNTIME_PROVIDERS": "cpu"}
    check_venv(venv, wanted, image_env)


# --- GPU images: resolution and base-image compatibility, no 250 MB installs --------------


def cuda_image(global_args: dict[str, str]) -> re.Match[str]:
    image = global_args["CUDA_IMAGE"]
    m = re.fullmatch(
        r"nvidia/cuda:(?P<major>\d+)\.(?P<minor>\d+)\.\d+-cudnn-runtime-ubuntu(?P<ubuntu>\d+\.\d+)",
        image,
    )
    assert m, f"{image}: expected an nvidia/cuda <version>-cudnn-runtime-ubuntu<release> tag"
    return m


def expected_cuda_major(ort_gpu: str) -> int:
    """PyPI onnxruntime-gpu wheels: 1.19-1.26 CUDA 12 + cuDNN 9; 1.27 on CUDA 13 + cuDNN 9."""
    version = tuple(int(x) for x in ort_gpu.split(".")[:2])
    if (1, 19) <= version < (1, 27):
        return 12
    if version >= (1, 27):
        return 13
    pytest.fail(f"onnxruntime-gpu {ort_gpu}: a CUDA 11 / cuDNN 8 build; no image for it")


@pytest.mark.parametrize("name", ["Dockerfile.cuda", "Dockerfile.tensorrt"])
def test_gpu_image_resolves_onnxruntime_gpu_for_its_cuda(name):
    uv = uv_exe()
    path = DOCKER / name
    global_args, _ = parse_dockerfile(path)
    stage = builder(path)
    commands = install_commands(stage)
    assert len(commands) == 2
    wanted = extras(expanded_args(commands[-1], stage.variables))
    assert "gpu" in wanted and "cpu" not in wanted
    export = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
        + [f"--extra={e}" for e in wanted],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    ort_gpu = locked_version("onnxruntime-gpu")
    assert f"onnxruntime-gpu=={ort_gpu}" in export
    assert not re.search(r"^onnxruntime==", export, re.M), "both packages provide onnxruntime"

    m = cuda_image(global_args)
    assert int(m["major"]) == expected_cuda_major(ort_gpu), (
        f"onnxruntime-gpu {ort_gpu} needs CUDA {expected_cuda_major(ort_gpu)}, "
        f"the image has {m['major']}.{m['minor']}"
    )
    python = UBUNTU_PYTHON[m["ubuntu"]]
    # the base's python3, found on PATH (no interpreter path baked in): the Ubuntu
    # release's, which must be one the package supports
    assert stage.variables["UV_PYTHON"] == "python3"
    from packaging.specifiers import SpecifierSet

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"{python}.0" in SpecifierSet(requires), f"Ubuntu {m['ubuntu']}'s Python {python}"


def test_tensorrt_image_carries_the_tensorrt_onnxruntime_was_built_with():
    global_args, _ = parse_dockerfile(DOCKER / "Dockerfile.tensorrt")
    trt = re.fullmatch(
        r"(?P<trt>(?P<major>\d+)\.\d+\.\d+)\.\d+-\d+\+cuda(?P<cuda>\d+)\.\d+",
        global_args["TRT_VERSION"],
    )
    assert trt, global_args["TRT_VERSION"]
    m = cuda_image(global_args)
    assert trt["cuda"] == m["major"], "TensorRT's CUDA build must match the image's CUDA"
    ort_gpu = locked_version("onnxruntime-gpu")
    assert ort_gpu in TRT_BUILT_WITH, (
        f"onnxruntime-gpu {ort_gpu} is new here: find the TensorRT it was built with (the "
        "constant passed to createInferBuilder_INTERNAL in its "
        "libonnxruntime_providers_tensorrt.so) and update TRT_VERSION and this table"
    )
    assert trt["trt"] == TRT_BUILT_WITH[ort_gpu]
    assert trt["major"] == "10", "the provider links libnvinfer.so.10"
    run = runtime(DOCKER / "Dockerfile.tensorrt")
    installs = " ".join(run.all("RUN"))
    for package in ("libnvinfer10", "libnvinfer-plugin10", "libnvonnxparsers10"):
        assert f'{package}="${{TRT_VERSION}}"' in installs, package

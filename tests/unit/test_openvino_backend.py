"""engine.runtime.backend: the setting, the one-line fallback, the background hand-over.

No model and no openvino needed: the CPU capability is passed in, and preparing is faked
(the real thing, on the real model: tests/integration/test_openvino_generator.py).
"""

from __future__ import annotations

import logging
import os
import threading
import types

import pytest

from fastkokoro_wyoming.config import load_config
from fastkokoro_wyoming.engine.errors import ConfigError
from fastkokoro_wyoming.engine.serving.acceleration import Acceleration, Decision, decide
from fastkokoro_wyoming.engine.serving.background import Progress


def test_backend_defaults_to_auto_and_is_read_from_yaml_env_and_flags(tmp_path) -> None:
    assert load_config(environ={}).engine.runtime.backend == "auto"
    yaml = tmp_path / "c.yaml"
    yaml.write_text("engine:\n  runtime:\n    backend: onnxruntime\n")
    assert load_config(yaml, environ={}).engine.runtime.backend == "onnxruntime"
    env = {"FASTKOKORO_ENGINE_RUNTIME_BACKEND": "OpenVINO"}
    assert load_config(yaml, environ=env).engine.runtime.backend == "openvino"
    flags = {"engine.runtime.backend": "auto"}
    assert load_config(yaml, environ=env, overrides=flags).engine.runtime.backend == "auto"


def test_an_unknown_backend_names_the_key_and_the_choices() -> None:
    env = {"FASTKOKORO_ENGINE_RUNTIME_BACKEND": "tensorflow"}
    with pytest.raises(ConfigError, match=r"engine.runtime.backend .*onnxruntime, openvino"):
        load_config(environ=env)


def NO_NNCF() -> bool:
    return False


def HAS_NNCF() -> bool:
    return True


def _caps(precision: str | None, why: str = "OpenVINO 2026.4, CPU FP32/BF16"):
    return lambda: (precision, why)


def test_onnxruntime_never_asks_openvino() -> None:
    def boom() -> tuple[str | None, str]:
        raise AssertionError("openvino probed")

    assert decide("onnxruntime", gpu=False, capability=boom, nncf=NO_NNCF).precision is None


@pytest.mark.parametrize("mode", ["auto", "openvino"])
def test_bf16_cpus_get_bf16(mode: str) -> None:
    assert decide(mode, gpu=False, capability=_caps("bf16"), nncf=NO_NNCF) == Decision(
        "bf16", "OpenVINO 2026.4, CPU FP32/BF16"
    )


def test_auto_keeps_onnxruntime_without_bf16_and_says_why() -> None:
    d = decide(
        "auto", gpu=False, capability=_caps("f32", "CPU FP32/INT8; flags avx512_vnni"), nncf=NO_NNCF
    )
    assert d.precision is None and not d.warn
    assert "no bf16" in d.why and "AMX" in d.why and "avx512_vnni" in d.why


def test_an_explicit_openvino_without_bf16_still_uses_it_in_f32() -> None:
    assert decide("openvino", gpu=False, capability=_caps("f32"), nncf=NO_NNCF).precision == "f32"


def test_missing_package_warns_only_when_asked_for() -> None:
    missing = _caps(None, "the openvino package is not installed (openvino)")
    auto, explicit = (
        decide(m, gpu=False, capability=missing, nncf=NO_NNCF) for m in ("auto", "openvino")
    )
    assert auto.precision is None and not auto.warn and "not installed" in auto.why
    assert explicit.precision is None and explicit.warn
    assert "pip install 'fastkokoro-wyoming[openvino]'" in explicit.why


def test_a_broken_install_or_a_gpu_falls_back() -> None:
    def broken() -> tuple[str | None, str]:
        raise RuntimeError("no CPU plugin")

    d = decide("openvino", gpu=False, capability=broken, nncf=NO_NNCF)
    assert d.precision is None and "no CPU plugin" in d.why
    assert decide("openvino", gpu=True, capability=_caps("bf16"), nncf=NO_NNCF).warn


def test_the_fallback_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    acc = Acceleration("openvino", Decision(None, "not installed", warn=True), 2, 1)
    with caplog.at_level(logging.INFO, "fastkokoro_wyoming"):
        acc.log_decision()
        acc.start(object(), Progress(), lambda d: None)  # type: ignore[arg-type]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Generator backend: ONNX Runtime (not installed)")
    ]


class FakeDecoder:
    window_lengths = [18, 28, 48, 88]


class Prepared(Acceleration):
    """Acceleration whose one-time work is a stand-in that waits for the test."""

    def __init__(self, result: object, release: threading.Event) -> None:
        super().__init__("auto", Decision("bf16", "test CPU"), 2, 1)
        self.result, self.release = result, release
        self.thread: str | None = None
        self.steps: list[str] = []

    def build_in_child(self, decoder, precision) -> None:  # type: ignore[override]
        self.steps.append(f"child {os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}")

    def prepare(self, decoder, precision):  # type: ignore[override]
        self.thread = threading.current_thread().name
        self.steps.append("load")
        assert self.release.wait(5)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_preparing_runs_in_the_background_and_hands_the_new_decoder_over() -> None:
    release, got = threading.Event(), threading.Event()
    new = object()
    acc, progress, handed = Prepared(new, release), Progress(), []
    acc.start(FakeDecoder(), progress, lambda d: (handed.append(d), got.set()))  # type: ignore[arg-type]
    assert progress.pending()[0]["task"] == "Compiling the generator for OpenVINO"
    assert handed == []  # the caller (the event loop) was not held up
    release.set()
    assert got.wait(5) and handed == [new]
    assert acc.thread == "kokoro-openvino" and progress.pending() == []
    # the compile in the child first, then the load in a thread at the caller's priority
    # (OpenVINO's inference threads keep the nice value of the thread that loads)
    assert acc.steps == [f"child {os.getpriority(os.PRIO_PROCESS, 0)}", "load"]


def test_a_failed_compile_process_says_its_last_line(monkeypatch) -> None:
    import subprocess

    from fastkokoro_wyoming.engine.model.windowed import ovtrunk

    failed = subprocess.CompletedProcess([], 1, b"", b"Traceback\nRuntimeError: no CPU plugin\n")
    monkeypatch.setattr(ovtrunk, "cached_check", lambda *a: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    acc = Acceleration("auto", Decision("bf16", "test CPU"), 1, 1)
    decoder = types.SimpleNamespace(graphs=None, window_lengths=[18])
    with pytest.raises(RuntimeError, match="exited 1: RuntimeError: no CPU plugin"):
        acc.build_in_child(decoder, "bf16")  # type: ignore[arg-type]


@pytest.mark.parametrize("result", [None, RuntimeError("compile failed")])
def test_no_hand_over_when_not_faster_or_failed(result, caplog) -> None:
    release = threading.Event()
    release.set()
    acc, progress, handed = Prepared(result, release), Progress(), []
    with caplog.at_level(logging.WARNING, "fastkokoro_wyoming"):
        acc.start(FakeDecoder(), progress, handed.append)  # type: ignore[arg-type]
        for _ in range(500):
            if not progress.pending():
                break
            threading.Event().wait(0.01)
    assert handed == [] and progress.pending() == []
    if isinstance(result, Exception):
        assert "OpenVINO failed: compile failed" in caplog.text


def test_openvino_precision_defaults_to_auto_and_is_a_setting(tmp_path) -> None:
    assert load_config(environ={}).engine.runtime.openvino_precision == "auto"
    env = {"FASTKOKORO_ENGINE_RUNTIME_OPENVINO_PRECISION": "int8"}
    assert load_config(environ=env).engine.runtime.openvino_precision == "int8"
    with pytest.raises(ConfigError, match=r"openvino_precision .*int8, bf16, f32"):
        load_config(environ={"FASTKOKORO_ENGINE_RUNTIME_OPENVINO_PRECISION": "fp8"})


@pytest.mark.parametrize(("cpu", "mode"), [("bf16", "auto"), ("f32", "auto"), ("f32", "openvino")])
def test_auto_is_int8_where_nncf_is_installed_with_the_cpus_float_elsewhere(cpu, mode) -> None:
    """NNCF's trunk pays without AMX (1.24x ORT's windows with its other work in bf16, 1.11x
    in f32), so auto tries it on any CPU; the one-time timing still decides."""
    d = decide(mode, gpu=False, capability=_caps(cpu), nncf=HAS_NNCF)
    assert (d.precision, d.hint, d.warn) == ("int8", cpu, False)


def test_int8_without_nncf_falls_back_to_the_float_trunk_and_warns() -> None:
    d = decide("openvino", gpu=False, capability=_caps("bf16"), precision="int8", nncf=NO_NNCF)
    assert d.precision == "bf16" and d.warn and "openvino-int8" in d.why
    d = decide("auto", gpu=False, capability=_caps("f32"), precision="int8", nncf=NO_NNCF)
    assert d.precision is None and d.warn and "NNCF" in d.why


def test_a_float_precision_is_honoured_even_with_nncf() -> None:
    assert decide("auto", gpu=False, capability=_caps("bf16"), precision="bf16",
                  nncf=HAS_NNCF).precision == "bf16"  # fmt: skip
    assert decide("openvino", gpu=False, capability=_caps("bf16"), precision="f32",
                  nncf=HAS_NNCF).precision == "f32"  # fmt: skip
    d = decide("openvino", gpu=False, capability=_caps("f32"), precision="bf16", nncf=HAS_NNCF)
    assert d.precision == "f32" and d.warn and "bf16 asked for" in d.why


def test_an_int8_decision_says_so_and_plans_the_quantisation(caplog) -> None:
    acc = Acceleration("auto", Decision("int8", "test CPU", hint="bf16"), 1, 1)
    assert acc.label == "int8 (bf16 elsewhere)"
    progress = Progress()
    release = threading.Event()
    prepared = Prepared(None, release)
    prepared.decision = acc.decision
    prepared.start(FakeDecoder(), progress, lambda d: None)  # type: ignore[arg-type]
    assert progress.pending()[0]["eta_s"] >= 30  # the NNCF run is in the estimate
    release.set()

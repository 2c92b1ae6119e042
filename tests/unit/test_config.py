import pytest

from fastkokoro_wyoming.config import Config, env_name, key_paths, load_config
from fastkokoro_wyoming.engine.errors import ConfigError


def test_defaults():
    cfg = load_config(environ={})
    assert cfg == Config()
    assert (cfg.http.port, cfg.wyoming.port, cfg.engine.default_voice) == (8880, 10210, "af_heart")


def test_precedence_default_yaml_env_flag(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("http:\n  port: 9001\n")
    assert load_config(y, environ={}).http.port == 9001
    assert load_config(y, environ={"FASTKOKORO_HTTP_PORT": "9002"}).http.port == 9002
    assert (
        load_config(
            y, environ={"FASTKOKORO_HTTP_PORT": "9002"}, overrides={"http.port": "9003"}
        ).http.port
        == 9003
    )


def test_legacy_fastkokoro_names_still_work():
    cfg = load_config(
        environ={
            "FASTKOKORO_PORT": "9100",
            "FASTKOKORO_ONNX_PROVIDERS": "CUDAExecutionProvider,CPUExecutionProvider",
            "FASTKOKORO_MODEL_PATH": "/m.onnx",
        }
    )
    assert cfg.http.port == 9100
    assert cfg.engine.runtime.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert cfg.engine.model.path == "/m.onnx"
    # the new name wins over the old one
    assert load_config(environ={"FASTKOKORO_PORT": "1", "FASTKOKORO_HTTP_PORT": "2"}).http.port == 2


def test_every_key_has_an_env_name():
    assert env_name("engine.model.path") == "FASTKOKORO_ENGINE_MODEL_PATH"
    assert len(key_paths()) > 30


@pytest.mark.parametrize(
    "yaml_text,env,match",
    [
        ("htp:\n  port: 1\n", {}, r"^htp: unknown key \(in .*c.yaml\)"),
        ("http:\n  prt: 1\n", {}, r"^http.prt: unknown key"),
        ("http:\n  port: abc\n", {}, r"^http.port \(from .*c.yaml\): expected int"),
        ("http:\n  port: 70000\n", {}, r"^http.port: 70000 is not a TCP port"),
        ("", {"FASTKOKORO_HTTP_PORTT": "1"}, r"^\$FASTKOKORO_HTTP_PORTT: unknown variable"),
        (
            "",
            {"FASTKOKORO_WYOMING_ZEROCONF": "maybe"},
            r"wyoming.zeroconf \(from \$FASTKOKORO_WYOMING",
        ),
        ("engine:\n  segmentation:\n    strategy: fastest\n", {}, r"engine.segmentation.strategy"),
        ("- a\n- b\n", {}, r"top level must be a mapping"),
        ("http: [\n", {}, r"not valid YAML"),
    ],
)
def test_errors_name_key_and_source(tmp_path, yaml_text, env, match):
    y = tmp_path / "c.yaml"
    y.write_text(yaml_text)
    with pytest.raises(ConfigError, match=match):
        load_config(y, environ=env)


def test_missing_file_and_unknown_flag(tmp_path):
    with pytest.raises(ConfigError, match="config file"):
        load_config(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(environ={}, overrides={"http.nope": 1})


def test_lists_and_mappings_from_env():
    cfg = load_config(
        environ={
            "FASTKOKORO_HTTP_CORS_ORIGINS": "https://a.example,https://b",
            "FASTKOKORO_HTTP_VOICE_MAP": '{"alloy": "af_bella"}',
        }
    )
    assert cfg.http.cors_origins == ("https://a.example", "https://b")
    assert cfg.http.voice_map == {"alloy": "af_bella"}


def test_shipped_yaml_documents_every_key_with_its_default():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "config" / "fastkokoro.yaml"
    assert load_config(path, environ={}) == Config()
    flat: set[str] = set()

    def walk(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict) and f"{prefix}{k}" not in key_paths():
                walk(v, f"{prefix}{k}.")
            else:
                flat.add(f"{prefix}{k}")

    walk(yaml.safe_load(path.read_text()))
    assert flat == set(key_paths())

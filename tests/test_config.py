from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    build_config,
    config_path,
    env_layer,
    load_config,
)
from agent.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    config = build_config()
    assert config.backend.url == "http://localhost:3000"
    assert config.backend.register_path == "/api/devices/register"
    assert config.backend.basket_path == "/api/basket"
    assert config.backend.pending_path == "/api/pending-items"
    assert config.backend.connect_timeout_s == 10.0
    assert config.routing.basket_threshold == 0.70
    assert config.delivery.breaker_fail_max == 5
    assert config.delivery.breaker_reset_s == 30.0
    assert config.state_dir == Path("/var/lib/basketagent")


def test_config_is_frozen() -> None:
    config = build_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend.url = "http://elsewhere:1"  # type: ignore[misc]


def test_layers_apply_file_then_env_then_flags() -> None:
    file_values = {"backend": {"url": "http://file:1000"}, "camera": {"fps": 5}}
    env = {"BASKETAGENT_BACKEND_URL": "http://env:2000", "BASKETAGENT_CAMERA_FPS": "7.5"}
    flags = {"backend": {"url": "http://flag:3000"}}
    config = build_config(file_values, env, flags)
    assert config.backend.url == "http://flag:3000"
    assert config.camera.fps == 7.5
    assert build_config(file_values, env).backend.url == "http://env:2000"
    assert build_config(file_values).camera.fps == 5.0  # TOML ints are accepted for floats


def test_env_state_dir_is_the_documented_variable() -> None:
    config = build_config(env={"BASKETAGENT_STATE_DIR": "/tmp/x"})
    assert config.state_dir == Path("/tmp/x")


def test_env_values_are_converted_by_type() -> None:
    config = build_config(env={
        "BASKETAGENT_BASKET_CONFIRM_FRAMES": "3",
        "BASKETAGENT_BASKET_RELEASE_FRAMES": "40",
        "BASKETAGENT_MODEL_DEVICE": "cpu",
    })
    assert config.basket.confirm_frames == 3
    assert config.basket.release_frames == 40
    assert config.model.device == "cpu"


def test_unrelated_environment_is_ignored() -> None:
    assert env_layer({"PATH": "/bin", "BASKETAGENT_CONFIG": "/x.toml"}) == {}


@pytest.mark.parametrize(
    ("layer", "env", "needle"),
    [
        ({"bogus": {}}, {}, "unknown config section [bogus]"),
        ({"backend": {"ur": "http://x:1"}}, {}, "unknown config key backend.ur"),
        ({"backend": "x"}, {}, "[backend] must be a table"),
        ({"camera": {"fps": "fast"}}, {}, "config key camera.fps: expected float"),
        ({"basket": {"confirm_frames": 2.5}}, {}, "basket.confirm_frames: expected int"),
        ({"basket": {"confirm_frames": True}}, {}, "basket.confirm_frames: expected int"),
        ({"routing": {"basket_threshold": 1.5}}, {}, "routing.basket_threshold = 1.5 is out of range"),
        ({"model": {"device": "gpu"}}, {}, "model.device = 'gpu' is not allowed"),
        ({"journal": {"full_policy": "panic"}}, {}, "journal.full_policy"),
        ({}, {"BASKETAGENT_CAMERA_FPS": "ten"}, "BASKETAGENT_CAMERA_FPS: 'ten' is not a number"),
        ({}, {"BASKETAGENT_NOPE_X": "1"}, "unknown environment variable BASKETAGENT_NOPE_X"),
        ({}, {"BASKETAGENT_BACKEND_NOPE": "1"}, "unknown environment variable BASKETAGENT_BACKEND_NOPE"),
        ({"backend": {"url": "ftp://x"}}, {}, "(not an http(s) URL)"),
        ({"backend": {"basket_path": "api/basket"}}, {}, "must start with '/'"),
        ({"basket": {"confirm_frames": 10, "release_frames": 5}}, {}, "release_frames must be at least"),
        ({"delivery": {"backoff_initial_s": 10.0, "backoff_max_s": 5.0}}, {}, "backoff_max_s"),
        ({"camera": {"source": "  "}}, {}, "camera.source is empty"),
        ({"state": {"dir": ""}}, {}, "state.dir is empty"),
    ],
)
def test_bad_values_name_the_key(layer: dict, env: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(layer, env)
    assert needle in str(info.value)
    assert info.value.exit_code == 2


def test_load_reads_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[backend]\nurl = "http://basket.example:3000"\n[basket]\nconfirm_frames = 4\n')
    config = load_config(str(path), env={})
    assert config.backend.url == "http://basket.example:3000"
    assert config.basket.confirm_frames == 4


def test_load_uses_env_config_path(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[log]\nlevel = "debug"\n')
    assert load_config(None, env={"BASKETAGENT_CONFIG": str(path)}).log.level == "debug"


def test_default_path_may_be_absent() -> None:
    path, named = config_path(None, {})
    assert path == DEFAULT_CONFIG_PATH and named is False


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"), env={})


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[backend\nurl = \n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_config(str(path), env={})
    assert "\n" not in str(info.value)


def test_directory_as_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path), env={})


def test_binary_config_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(str(path), env={})


def test_flags_override_everything(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[model]\ndevice = "edgetpu"\n')
    config = load_config(str(path), {"model": {"device": "cpu"}},
                         env={"BASKETAGENT_MODEL_DEVICE": "auto"})
    assert config.model.device == "cpu"


def test_every_section_is_a_frozen_dataclass() -> None:
    for section in dataclasses.fields(Config):
        value = getattr(Config(), section.name)
        assert dataclasses.is_dataclass(value)
        assert type(value).__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "problem"), [
    ("http://localhost:99999", "port out of range"),
    ("http://exa mple.com", "no usable host name"),
    ("http://[::1", "invalid ipv6 url"),
    ("http://", "no usable host name"),
    ("http://basket.example:0", "port 0"),
    ("https://basket.example/api?x=1", "a query or fragment"),
])
def test_backend_url_must_be_a_usable_base_url(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(flags={"backend": {"url": url}})
    assert str(info.value).startswith(f"backend.url = {url!r} is not a usable base URL ({problem}")


@pytest.mark.parametrize("url", ["http://localhost:3000", "https://basket.example/base",
                                 "http://[::1]:3000", "http://10.0.0.2"])
def test_good_backend_urls_are_accepted(url: str) -> None:
    assert build_config(flags={"backend": {"url": url}}).backend.url == url


def test_unusable_config_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not usable"):
        load_config("a" * 300, env={})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="does not exist|not usable|cannot be read"):
        load_config(str(blocker / "agent.toml"), env={})


def test_config_that_fails_to_read_is_a_config_error() -> None:
    # /proc/self/mem exists and opens, but reading it at offset 0 fails with EIO.
    with pytest.raises(ConfigError, match="cannot be read: Input/output error"):
        load_config("/proc/self/mem", env={})


def test_a_bad_backend_url_is_reported_without_its_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(flags={"backend": {"url": "http://user:s3cret@host:99999"}})
    assert "s3cret" not in str(info.value) and "//***@host:99999" in str(info.value)

"""Settings in typed sections (core/config.py): the file, the environment, one line per bad
value, and the docs' settings blocks made from the model."""
from pathlib import Path

import pytest

from core.config import Settings, documented, load
from core.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_environment_wins_over_the_file_which_wins_over_the_defaults(tmp_path):
    path = tmp_path / "shoprecs.toml"
    path.write_text('[bus]\nurl = "http://file"\nper_page = 50\n[service]\nport = 9\n')
    s = load(path, env={"SHOPRECS_SERVICE_PORT": "7", "SHOPRECS_WAREHOUSE_ROOT": "/data/w"})
    assert (s.bus.url, s.bus.per_page, s.service.port) == ("http://file", 50, 7)
    assert s.root == Path("/data/w") and s.bus.timeout == 30.0  # a default
    assert Settings().bus.url == "http://127.0.0.1:8765"  # Settings() reads nothing


@pytest.mark.parametrize("env, line", [
    ({"SHOPRECS_BUS_PER_PAGE": "x"}, "bus.per_page = 'x' (SHOPRECS_BUS_PER_PAGE): input "
                                     "should be a valid integer"),
    ({"SHOPRECS_SERVICE_STORE": "redis"}, "service.store = 'redis' (SHOPRECS_SERVICE_STORE): "
                                          "input should be 'snapshot' or 'mongo'"),
    ({"SHOPRECS_SERVICE_PORT": "70000"}, "service.port = '70000' (SHOPRECS_SERVICE_PORT): "
                                         "input should be less than or equal to 65535"),
    ({"SHOPRECS_PRIVACY_HMAC_KEY": ""}, "privacy.hmac_key (SHOPRECS_PRIVACY_HMAC_KEY): string "
                                        "should have at least 1 character"),
])
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_the_rule(env, line):
    with pytest.raises(ConfigError) as found:
        load(env=env)
    assert str(found.value).startswith(line), str(found.value)
    assert "\n" not in str(found.value)


def test_an_unknown_key_in_the_file_is_named(tmp_path):
    path = tmp_path / "shoprecs.toml"
    path.write_text('[bus]\nurll = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown setting bus\.urll"):
        load(path, env={})


def test_replace_takes_the_environment_names_and_checks_them():
    s = Settings().replace(bus_url="http://r", service_port=81)
    assert (s.bus.url, s.service.port, s.bus.per_page) == ("http://r", 81, 100)
    with pytest.raises(ConfigError, match="service.port = -1"):
        Settings().replace(service_port=-1)
    with pytest.raises(ConfigError, match="no section 'nope'"):
        Settings().replace(nope_x=1)


def test_every_settings_block_of_the_docs_is_the_models():
    pages = {p.name: p.read_text() for p in sorted(DOCS.glob("*.md"))}
    blocks = {name for name, text in pages.items() if "<!-- settings:" in text}
    assert {"configuration.md", "serving.md"} <= blocks
    for name, text in pages.items():
        assert documented(text) == text, f"docs/{name} is stale: run `make docs`"
    # every section of the model is documented somewhere
    shown = " ".join(text for text in pages.values())
    assert all(f"[{section}]" in shown for section in Settings.model_fields)


def test_api_keys_are_a_comma_separated_string_or_a_toml_list(tmp_path):
    path = tmp_path / "shoprecs.toml"
    path.write_text('[admin]\napi_keys = ["k1", "k2"]\n[storefront]\napi_keys = "s1, s2"\n')
    s = load(path, env={})
    assert (s.admin.api_keys, s.storefront.api_keys) == ("k1,k2", "s1, s2")
    path.write_text('[admin]\napi_keys = [1, 2]\n')
    with pytest.raises(ConfigError, match=r"admin\.api_keys"):
        load(path, env={})

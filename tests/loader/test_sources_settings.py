"""``[sources.NAME]`` settings: TOML, the DSN variable, dsn_file, errors, and the round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcache.errors import ConfigError
from meshcache.settings import load_settings, settings_as_toml, unknown_env_vars
from meshcache.store.loader_policy import LoaderPolicy


def test_sources_from_toml_env_and_a_dsn_file(tmp_path: Path) -> None:
    (tmp_path / "pg.dsn").write_text("postgresql://app:secret@db/app\n")
    config = tmp_path / "node.toml"
    config.write_text(
        '[sources.pg]\ndsn_file = "pg.dsn"\npool_size = 8\nstatement_timeout = "250ms"\n'
        "[namespaces.items]\n"
        'loader = {source = "pg", query = "SELECT v FROM items WHERE id = $1", ttl = "5m"}\n'
    )
    s = load_settings(
        config_file=config, environ={"MESHCACHE_SOURCE_OTHER_DSN": "postgresql://o/o"}
    )
    pg = s.sources["pg"]
    assert pg.dsn_file == tmp_path / "pg.dsn"  # relative to the file
    assert pg.resolve_dsn("pg") == "postgresql://app:secret@db/app"
    assert (pg.pool_size, pg.statement_timeout) == (8, 0.25)
    assert s.sources["other"].resolve_dsn("other") == "postgresql://o/o"
    assert "secret" not in repr(s)  # a DSN is never shown
    loader = s.namespaces["items"].loader
    assert loader == LoaderPolicy("pg", "SELECT v FROM items WHERE id = $1", ttl=300.0)
    again = tmp_path / "again.toml"
    again.write_text(settings_as_toml(s))
    read_back = load_settings(config_file=again, environ={})
    assert (read_back.sources, read_back.namespaces) == (s.sources, s.namespaces)
    assert unknown_env_vars({"MESHCACHE_SOURCE_PG_DSN": "x", "MESHCACHE_SORCE": "y"}) == [
        "MESHCACHE_SORCE"
    ]


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[sources.pg]\npool_size = 2\n", "set dsn, dsn_file or MESHCACHE_SOURCE_PG_DSN"),
        ('[sources.pg]\ndsn = "x"\npool = 2\n', "unknown source setting 'pool'"),
        ('[sources.PG]\ndsn = "x"\n', "must be a lower-case identifier"),
        ('[sources.pg]\ndsn = "x"\npool_size = 0\n', "not a positive integer"),
        ('[namespaces.a]\nloader = {source = "pg"}\n', "loader needs query"),
        ('[namespaces.a]\nloader = {source = "pg", query = "q", tll = 1}\n', "unknown loader"),
        (
            '[namespaces.a]\nloader = {source = "pg", query = "q", refresh_ahead = 2}\n',
            "refresh_ahead",
        ),
        ('[namespaces.a]\nloader = {source = "pg", query = "q", channel = "A b"}\n', "channel"),
    ],
)
def test_bad_sources_and_loaders_are_one_line_errors(
    tmp_path: Path, toml: str, problem: str
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=problem):
        load_settings(config_file=config, environ={})


def test_an_unreadable_dsn_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[sources.pg]\ndsn_file = "missing.dsn"\n')
    source = load_settings(config_file=config, environ={}).sources["pg"]
    with pytest.raises(ConfigError, match=r"missing\.dsn"):
        source.resolve_dsn("pg")

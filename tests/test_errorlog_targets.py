"""Several error_log targets (newproxy/http/errorlog.py, the translator, the config and -g): unit
checks; tests/test_differential_errorlog_multi.py compares the files with nginx's."""

from __future__ import annotations

from pathlib import Path

from newproxy.cli import _apply_global_directives
from newproxy.config import NewproxyConfig
from newproxy.http.errorlog import ErrorLog, targets_of
from nginx_parser import parse_config
from translator import translate


def test_a_message_goes_to_each_target_its_level_admits(tmp_path: Path) -> None:
    log = ErrorLog([f"{tmp_path}/warn.log warn", f"{tmp_path}/crit.log crit", f"{tmp_path}/info.log info"])
    log.open()
    log.log("error", "an error", 7)
    log.log("notice", "a notice")
    log.log("debug", "dropped everywhere")
    log.close()
    text = {name: (tmp_path / name).read_text() for name in ("warn.log", "crit.log", "info.log")}
    assert text["crit.log"] == ""
    assert text["warn.log"].endswith(": *7 an error\n") and text["warn.log"].count("\n") == 1
    assert "*7 an error\n" in text["info.log"] and text["info.log"].endswith(": a notice\n")
    assert log.level == 7 and log.own == 5  # the most verbose target decides what is formatted at all
    assert log.enabled("info") and not log.enabled("debug")


def test_an_unopenable_target_names_its_own_file(tmp_path: Path) -> None:
    log = ErrorLog([f"{tmp_path}/ok.log", f"{tmp_path}/missing/dir.log error"])
    try:
        log.open()
    except OSError as exc:
        assert exc.filename == f"{tmp_path}/missing/dir.log"
    else:
        raise AssertionError("opened a file in a missing directory")
    finally:
        log.close()


def test_translation_keeps_every_error_log_of_a_block(tmp_path: Path) -> None:
    path = tmp_path / "nginx.conf"
    path.write_text("error_log a.log; error_log b.log notice;\nevents {}\nhttp {\n"
                    " error_log h.log;\n"
                    " server { listen 8080; error_log s1.log warn; error_log s2.log crit;\n"
                    "  location /one/ { error_log l.log info; }\n"
                    "  location /inherits/ { }\n"
                    " }\n"
                    " server { listen 8081; }\n"
                    "}\n")
    config = translate(parse_config(str(path))).config
    assert config.error_log == ["a.log", "b.log notice"]
    first, second = config.servers
    assert first.error_log == ["s1.log warn", "s2.log crit"]
    assert [loc.error_log for loc in first.locations] == ["l.log info", ["s1.log warn", "s2.log crit"]]
    assert second.error_log == "h.log"  # one line stays a plain string, as before


def test_config_accepts_a_string_or_a_list() -> None:
    assert NewproxyConfig.model_validate({"error_log": "x.log warn"}).error_log == "x.log warn"
    assert NewproxyConfig.model_validate({"error_log": ["x.log", "y.log info"]}).error_log == ["x.log", "y.log info"]
    assert targets_of("x.log") == ("x.log",) and targets_of(None) == () and targets_of(["a", "b"]) == ("a", "b")


def test_g_error_log_adds_to_the_configs() -> None:
    """nginx -g "error_log FILE" writes to that file and to the config's error_log files too."""
    config = NewproxyConfig(error_log="a.log")
    assert _apply_global_directives(config, "error_log g.log notice;").error_log == ["a.log", "g.log notice"]
    assert _apply_global_directives(NewproxyConfig(), "error_log g.log;").error_log == ["g.log"]

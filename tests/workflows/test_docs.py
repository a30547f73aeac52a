"""The manual: generated pages equal what the code generates now, every `layergw ...` command the
README and docs show exists and takes --help, and every relative link resolves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_generated_reference_pages_equal_what_the_code_generates() -> None:
    from workflows.docs import generate

    for name, text in generate().items():
        path = REPO / "docs" / name
        assert path.exists() and path.read_text() == text, f"{path} is stale: run `layergw docs`"


def test_the_config_reference_names_every_key_and_measure() -> None:
    from layergw import measures
    from workflows.config import StudyConfig
    from workflows.docs import config_reference

    page = config_reference()
    for key in StudyConfig.model_fields:
        assert f"| `{key}` |" in page
    for name in measures.names():
        assert f"| `{name}` |" in page


def test_check_mode_reports_a_stale_page_and_writes_nothing(tmp_path) -> None:
    from workflows.docs import write

    assert sorted(Path(p).name for p in write(tmp_path, check=True)) == ["cli.md", "config.md"]
    assert not list(tmp_path.iterdir())
    write(tmp_path)
    assert write(tmp_path, check=True) == []
    (tmp_path / "cli.md").write_text("old")
    assert write(tmp_path, check=True) == [str(tmp_path / "cli.md")]


def _commands() -> set[tuple[str, ...]]:
    """`layergw <command> [<suite>]` as the pages show them (code and inline code)."""
    found = set()
    for page in PAGES:
        text = page.read_text()
        for code in re.findall(r"```.*?```", text, re.S) + re.findall(r"`[^`\n]+`", text):
            for m in re.finditer(r"(?:^|(?<=[\s`]))(?<!from )(?<!import )layergw ([a-z][a-z-]*)(?: ([a-z][a-z0-9-]*))?", code, re.M):
                found.add((m.group(1), m.group(2) or ""))
    return found


def test_every_command_the_pages_show_exists_and_takes_help(capsys) -> None:
    from workflows.cli import build_parser

    commands = _commands()
    assert {c for c, _ in commands} >= {"run", "report", "bench", "submit", "docs"}
    for command, _ in sorted(commands):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([command, "--help"])
        assert done.value.code == 0, command
    suites = {s for c, s in commands if c == "bench" and s and s not in {"history"}}
    from workflows.bench import SUITES

    assert suites <= set(SUITES) | {"all"}, f"pages name bench suites that do not exist: {suites - set(SUITES)}"


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken

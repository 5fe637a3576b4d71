"""The documentation cannot drift: the site builds with `mkdocs build --strict` (a broken link,
anchor or missing page fails), its command-line reference names every command, argument and
option of the live Typer app, its format pages name every property of every JSON Schema, and
every `payattn ...` command line shown in the README or the docs uses commands and options that
exist. Each check walks the code itself, not docs/hooks.py, so a generator that silently drops
something fails here."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCHEMAS = ROOT / "payattn" / "runtime" / "schemas"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = mkdocs_build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def live_app():
    import typer

    from payattn.cli import app
    return typer.main.get_command(app)


def commands(cmd, path: str = "payattn"):
    """(path, command) for the root and every visible sub-command."""
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        if not sub.hidden:
            yield from commands(sub, f"{path} {name}")


def plain(text: str) -> str:
    """Text as a reader sees it: one space between words, no code-span backticks."""
    return " ".join(text.replace("`", "").split())


def section(page: str, anchor: str) -> str:
    start = page.index(f'<h2 id="{anchor}"')
    end = page.find("<h2 ", start + 1)
    return page[start:end if end != -1 else len(page)]


def test_cli_reference_names_every_command_argument_and_option(site: Path) -> None:
    page = (site / "reference" / "cli" / "index.html").read_text()
    for path, cmd in commands(live_app()):
        anchor = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
        assert f'<h2 id="{anchor}"' in page, f"{path} has no section in the CLI reference"
        part = section(page, anchor)
        shown = plain(re.sub(r"<[^>]+>", "", html.unescape(part)))
        if cmd.help:
            assert plain(cmd.help.split("\f")[0])[:40] in shown, f"{path}: its help is missing"
        for param in cmd.params:
            if param.hidden:
                continue
            names = [*param.opts, *param.secondary_opts] if param.param_type_name == "option" \
                else [param.name.upper()]
            for name in names:
                assert f"<code>{html.escape(name, quote=False)}</code>" in part, f"{path}: {name} missing"
            if getattr(param, "help", None):
                assert plain(param.help)[:40] in shown, f"{path}: the help of {names[0]} is missing"


def schema_properties(node) -> set[str]:
    """Every key of every `properties` object anywhere in a schema, $defs included."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            found |= schema_properties(value)
    elif isinstance(node, list):
        for value in node:
            found |= schema_properties(value)
    return found


def test_format_pages_name_every_schema_property(site: Path) -> None:
    files = [path for path in sorted(SCHEMAS.glob("*.schema.json")) if "properties" in json.loads(path.read_text())]
    assert {path.name for path in files} >= {"result.schema.json", "manifest.schema.json", "job.schema.json",
                                            "parity.schema.json"}
    for path in files:
        page = site / "formats" / path.name.removesuffix(".schema.json") / "index.html"
        assert page.exists(), f"no format page for {path.name}"
        rows = re.findall(r"<tr>\s*<td><code>([^<]+)</code></td>", page.read_text())
        leaves = {html.unescape(row).split(".")[-1].removesuffix("[]") for row in rows}
        missing = schema_properties(json.loads(path.read_text())) - leaves
        assert not missing, f"{path.name}: {sorted(missing)} not on its page"


def test_speedmap_images_are_on_the_performance_page(site: Path) -> None:
    page = (site / "performance" / "index.html").read_text()
    for image in ("speedmap.png", "speedmap-heads1.png"):
        assert (site / image).exists() and f'"../{image}"' in page, image


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("__pycache__", "hooks.py"))
    with (docs / "install.md").open("a") as f:
        f.write("\nSee [the missing page](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}").replace("  - docs/hooks.py",
                                                                             f"  - {DOCS / 'hooks.py'}")
    (tmp_path / "mkdocs.yml").write_text(config)
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stderr, done.stderr[-2000:]


def shown_command_lines() -> list[tuple[str, str]]:
    """(file, line) for every `payattn ...` line inside a code block of the README or the docs."""
    found = []
    for md in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        fenced = False
        for line in md.read_text().splitlines():
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            code = fenced or line.startswith("    ")
            if code and line.strip().startswith("payattn "):
                found.append((md.relative_to(ROOT).as_posix(), line.strip()))
    return found


def test_command_lines_shown_in_the_docs_use_real_commands_and_options() -> None:
    root = live_app()
    lines = shown_command_lines()
    assert len(lines) > 20
    for where, line in lines:
        words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)[1:]
        cmd, path = root, "payattn"
        while words and words[0] in (getattr(cmd, "commands", None) or {}):
            path += f" {words[0]}"
            cmd = cmd.commands[words.pop(0)]
        options = {opt for param in cmd.params for opt in [*param.opts, *param.secondary_opts]} | {"--help"}
        for word in words:
            if word.startswith("-") and not re.fullmatch(r"-\d.*", word):
                assert word.split("=")[0] in options, f"{where}: `{line}` uses {word}, which {path} lacks"


def test_readme_is_the_landing_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    assert "make demo   # creates .venv, installs" in readme and "make test   # creates .venv, installs" in readme
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"

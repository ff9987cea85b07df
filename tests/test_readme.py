"""The README is part of the interface: its two commands and its configuration reference."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from agent.config import Config


def readme(repo_root: Path) -> str:
    return (repo_root / "README.md").read_text()


def test_readme_holds_exactly_two_shell_commands(repo_root: Path) -> None:
    text = readme(repo_root)
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    assert "<!-- demo-command -->\n```sh" in text and "<!-- test-command -->\n```sh" in text
    demo, test = (block.strip() for block in blocks)
    assert demo.endswith("basketagent demo")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command(repo_root: Path) -> None:
    ci = (repo_root / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci


def test_every_config_key_is_documented(repo_root: Path) -> None:
    text = readme(repo_root)
    config = Config()
    missing = [f"{section.name}.{key.name}"
               for section in fields(config)
               for key in fields(getattr(config, section.name))
               if f"`{section.name}.{key.name}`" not in text]
    assert missing == []

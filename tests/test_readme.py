"""The commands and code in README.md and docs/ stay valid: parsed (shell) or run (Python)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mfclip.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def _commands() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for block in _blocks(path, "bash"):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith(("mfclip ", ".venv/bin/mfclip ")):
                    out.append((path.name, line.split("mfclip ", 1)[1]))
    return out


COMMANDS = _commands()


def test_docs_have_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}:{c[:40]}" for d, c in COMMANDS])
def test_documented_command_parses(doc, command):
    parser = build_parser()
    argv = shlex.split(command)
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse error: the documented command is stale
        if exc.code == 0:  # --version / --help
            return
        pytest.fail(f"{doc}: `mfclip {command}` does not parse (exit {exc.code})")
    leftovers = [x for x in extra if "=" not in x or x.startswith("-")]
    assert not leftovers, f"{doc}: unknown arguments {leftovers} in `mfclip {command}`"
    assert getattr(args, "func", None) is not None, f"{doc}: `mfclip {command}` names no command"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks(ROOT / "README.md", "python")[0].replace('"mfclip-tiny")  ', '"mfclip-tiny")')
    assert 'create_model("mfclip-tiny")' in code
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "my-model" / "model.safetensors").is_file()

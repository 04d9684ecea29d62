"""A reader of the Dockerfile subset that the project's Dockerfile uses, for its tests.

It joins continued lines, drops comments and splits the file into stages of instructions. It
does not evaluate anything; tests/deploy/test_image.py replays the build stage's steps.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword in upper case, its argument text and its first line."""

    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """Return the JSON array of an exec-form CMD, ENTRYPOINT or VOLUME."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"line {self.line}: expected a JSON array"
        return [str(item) for item in value]

    def healthcheck_command(self) -> list[str]:
        """Return the exec-form command of `HEALTHCHECK [--flag=value ...] CMD [...]`."""
        _, _, command = self.arguments.partition(" CMD ")
        value = json.loads(command)
        assert isinstance(value, list), f"line {self.line}: expected CMD with a JSON array"
        return [str(item) for item in value]

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """Split `--flag=value` options from the other words, as COPY and HEALTHCHECK take them."""
        flags: dict[str, str] = {}
        words = shlex.split(self.arguments)
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclass
class Stage:
    """One FROM and the instructions after it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    """The global ARG defaults and the stages, in order."""

    arguments: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse the Dockerfile at `path` into global arguments and stages."""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(path.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            base = expand(words[0], arguments)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            arguments[key.strip()] = default.strip()
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return Dockerfile(arguments, stages)


def parse_env(arguments: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Parse `ENV KEY=value ...`, expanding $VAR and ${VAR} from `environ` and earlier keys."""
    values: dict[str, str] = {}
    for word in shlex.split(arguments):
        key, separator, value = word.partition("=")
        assert separator, f"ENV {word!r}: only the KEY=value form is supported"
        values[key] = expand(value, {**environ, **values})
    return values


def expand(text: str, environ: Mapping[str, str]) -> str:
    """Replace $VAR and ${VAR} in `text` with their values in `environ` (empty when unset)."""
    return _VARIABLE.sub(lambda match: environ.get(match.group(1) or match.group(2), ""), text)


def _instructions(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    first_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction.
        if not pending:
            first_line = number
        continued = stripped.endswith("\\")
        pending.append(stripped.removesuffix("\\").strip())
        if continued:
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), first_line))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions

"""The README's console examples on the bundled example run, and show what netpol prints.

Every `$ netpol ...` line of a ```console block whose input is `policies` alone is run; the lines shown
under it must be what it prints, in order (a line ending in `...` stands for its prefix, a line of
`...` alone for any lines); `$ echo $?` shows the exit code. Examples on other inputs (a pull request's folders, a changed
copy of the example) run on inputs built here (ILLUSTRATIONS); only those that need a node's kernel
(`sudo netpol enforce`) are left to the kernel tests.
"""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.paths import POLICIES, ROOT
from support.shop import BASE, HEAD, checkout, frontend_backend
from typer.testing import CliRunner

from netpol.cli import app

README = (ROOT / "README.md").read_text()
OFFLINE = ("check", "matrix", "lint", "render", "tenants")  # never enforce or lab: nothing here touches the kernel


def examples() -> list[tuple[str, list[str], int | None]]:
    """(command, shown lines, shown exit code) for each runnable command."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.startswith("$ netpol "):
                continue
            shown = []
            while i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i])
                i += 1
            code = None
            if i < len(lines) and lines[i] == "$ echo $?":
                code = int(lines[i + 1])
                i += 2
            command, _, comment = line[2:].partition("  #")
            command = command.strip()
            if comment.strip().startswith("with "):
                continue  # shown on a changed copy of the example ("# with ... renamed"): an illustration
            args = shlex.split(command)[1:]
            paths = [a for k, a in zip(args, args[1:], strict=False) if k in ("-f", "--filename")]
            if args[0] == "lint":
                paths += [a for a in args[1:] if not a.startswith("-") and "/" in a]
            if args[0] in OFFLINE and paths and all(p.rstrip("/") == "policies" for p in paths):
                out.append((command, shown, code))
    return out


def _matches(shown: list[str], actual: list[str]) -> bool:
    j = 0
    for k, want in enumerate(shown):
        if want.strip() == "...":
            rest = shown[k + 1:]
            return any(_matches(rest, actual[m:]) for m in range(j, len(actual) + 1))
        if j >= len(actual):
            return False
        got = actual[j]
        if want.endswith("..."):
            if not got.startswith(want[:-3].rstrip()):
                return False
        elif got.rstrip() != want.rstrip():
            return False
        j += 1
    return True


EXAMPLES = examples()


def test_the_readme_has_runnable_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize(("command", "shown", "code"), EXAMPLES, ids=[e[0][:60] for e in EXAMPLES])
def test_a_readme_example_prints_what_it_shows(command, shown, code, monkeypatch):
    monkeypatch.chdir(POLICIES.parent)
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code in (0, 1), result.output
    if code is not None:
        assert result.exit_code == code
    assert _matches(shown, result.output.splitlines()), f"{command}\n--- shown\n" + "\n".join(shown) + \
        "\n--- printed\n" + result.output



def commands() -> list[str]:
    """`netpol` lines of ```sh blocks that read the bundled example alone (offline commands only)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if not command.startswith("netpol ") or "|" in command or ">" in command:
                continue
            args = shlex.split(command)[1:]
            paths = [a for k, a in zip(args, args[1:], strict=False) if k in ("-f", "--filename")]
            if args[0] == "lint":
                paths += [a for a in args[1:] if not a.startswith("-") and "/" in a]
            if args[0] in OFFLINE and paths and all(p.rstrip("/") == "policies" for p in paths):
                out.append(command)
    return out


COMMANDS = commands()


def test_the_readme_has_offline_commands():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_runs(command, monkeypatch):
    monkeypatch.chdir(POLICIES.parent)
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code in (0, 1), f"{command}\n{result.output}"


@pytest.mark.parametrize("code", re.findall(r"```python\n(.*?)```", README, re.S))
def test_a_readme_python_example_runs(code, monkeypatch):
    monkeypatch.chdir(POLICIES.parent)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102  (the README's own example)


# ---- examples on other inputs: each gets the input it describes ----

def _workloads(tmp: Path) -> None:
    (tmp / "manifests").mkdir()
    (tmp / "manifests" / "apps.yaml").write_text(frontend_backend("default"))


def _pull_request(tmp: Path) -> None:
    checkout(tmp, "base/k8s", BASE)
    checkout(tmp, "head/k8s", HEAD)


def _edited(old: str, new: str) -> Callable[[Path], None]:
    """The bundled example with one edit in tenant3/db-access."""
    def build(tmp: Path) -> None:
        shutil.copytree(POLICIES, tmp / "policies")
        path = tmp / "policies" / "tenant3-db.yaml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return build


ILLUSTRATIONS: dict[str, tuple[Callable[[Path], None], str | None]] = {
    # README command -> (build its input, the offline command that runs it: render loads like enforce)
    "netpol matrix --workloads -o txt -f manifests/": (_workloads, None),
    "netpol diff base/k8s head/k8s": (_pull_request, None),
    "netpol check tenant2/app-0 tenant3/db-0 -p 5432 -f policies/": (_edited("matchLabels", "matchLabel"), None),
    "netpol enforce -f policies/": (_edited("name: db-access", """name: 'db-access" ; counter accept comment "x'"""),
                                    "netpol render -f policies/"),
}


def illustrations() -> list[tuple[str, list[str], int | None]]:
    out = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            command = line[2:].partition("  #")[0].strip()
            if line.startswith("$ netpol ") and command in ILLUSTRATIONS:
                shown = list(itertools.takewhile(lambda x: not x.startswith("$ "), lines[i + 1:]))
                out.append((command, shown, None))
    return out


def test_every_illustration_is_in_the_readme():
    assert sorted(c for c, _, _ in illustrations()) == sorted(ILLUSTRATIONS)


@pytest.mark.parametrize(("command", "shown", "code"), illustrations(), ids=lambda v: str(v)[:50])
def test_a_readme_illustration_prints_what_it_shows(command, shown, code, tmp_path, monkeypatch):
    build, run_as = ILLUSTRATIONS[command]
    build(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, shlex.split(run_as or command)[1:])
    assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, result.output
    assert _matches(shown, result.output.splitlines()), f"{command}\n--- shown\n" + "\n".join(shown) + \
        "\n--- printed\n" + result.output

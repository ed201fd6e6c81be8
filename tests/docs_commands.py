"""Runs the shell commands the documentation shows, as a reader would type them (test_docs_commands.py).

`collect` finds every command: fenced ```sh / ```bash / ```shell / ```console blocks of the Markdown pages
(a ```text block right after a command block is the expected output of that block's last command; in a
console block, the lines after a `$ ` command are its output), the `ccs-exporter ...` commands that
docs/runbooks.md writes inline, and the commands in comments of YAML files (`#   ccs-exporter check-config
--config config.example.yaml`).

`DocRunner` runs one page's commands in order, in one work directory (a copy of the repository's documented
files), against one CCS simulator over TLS with its own CA, with HOME, TZ and free ports of its own. What the
docs leave to the reader is filled in from `SUBSTITUTIONS` (example hosts, paths and placeholders such as
JOB_ID); `kubectl exec ... -- CMD` runs CMD here; `helm install` and `kubectl create` run with
`--dry-run=client`; servers (`serve`, `demo`, `simulate`, `prometheus`) are started, probed until they answer
and stopped by their own process id at the end of their block. Commands that cannot run here are listed in
CANNOT_RUN of test_docs_commands.py with the reason, and are parsed instead (`bash -n`, the CLI's parser).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from conftest import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# The documented files whose commands run. Markdown pages: fenced blocks; YAML: commands in comments.
DOCUMENTED = ("README.md", "helm/ccs-exporter/README.md", "prometheus/README.md", "config.example.yaml")
DOCS_GLOBS = ("docs/**/*.md", "docs/**/*.yaml")

# What the work directory holds: the files the documented commands read, copied (so that a command writing
# into them cannot change the repository). `.tools` (helm, readme-generator) is linked.
COPIED = (
    "README.md", "CHANGELOG.md", "config.example.yaml", "pyproject.toml", "constraints.txt", "Dockerfile",
    "LICENSE", "mkdocs.yml", "docs", "helm", "prometheus", "grafana", "benchmarks", ".ci",
)  # fmt: skip

SHELL_LANGS = {"sh", "bash", "shell", "console"}

# A table of commands that cannot run here: (pattern searched in the command as documented, reason).
CannotRun = tuple[tuple[str, str], ...]

# Commands whose prefix is what the test's environment already did: (prefix, what is checked instead).
PREPARED: tuple[tuple[str, str], ...] = (
    ("pip install . && ", "the package is installed in this environment"),
    ("pip install -e '.[test]' && ", "the package is installed in this environment"),
)


@dataclass(frozen=True)
class DocCommand:
    """One command as documented: where, the text (continuation lines and here-documents kept)."""

    source: str
    line: int
    block: int
    text: str
    expected: tuple[str, ...] | None = None
    cwd: str = ""
    # A ```yaml block whose first line is `# /some/path.yaml` is that file: written (as `cat > path`) for the
    # commands after it, and not counted as a command.
    writes_file: bool = False

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class Outcome:
    """What running (or parsing) one command gave."""

    command: DocCommand
    ran: bool
    problem: str | None = None
    note: str = ""


# --- collecting -------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w-]*)")
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def documented_files(root: Path = REPO_ROOT) -> list[str]:
    """The files whose commands run, relative to ``root``."""
    found = [name for name in DOCUMENTED if (root / name).is_file()]
    for pattern in DOCS_GLOBS:
        found += sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
    return found


def collect(root: Path, source: str) -> list[DocCommand]:
    """Every command ``source`` (relative to ``root``) shows, in order."""
    text = (root / source).read_text(encoding="utf-8")
    if source.endswith((".yaml", ".yml")):
        return _yaml_comment_commands(source, text)
    commands = _fenced_commands(source, text)
    if source == "docs/runbooks.md":
        commands += _inline_commands(source, text)
    return sorted(commands, key=lambda c: c.line)


def _yaml_comment_commands(source: str, text: str) -> list[DocCommand]:
    cwd = str(Path(source).parent) if "/" in source else ""
    commands = []
    for number, line in enumerate(text.splitlines(), 1):
        found = re.match(r"^#\s{2,}(ccs-exporter .*)$", line)
        if found:
            command = re.sub(r"\s+#.*$", "", found.group(1)).strip()
            commands.append(DocCommand(source, number, number, command, cwd=cwd))
    return commands


def _inline_commands(source: str, text: str) -> list[DocCommand]:
    commands = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for span in re.findall(r"`(ccs-exporter [^`]+)`", line):
            commands.append(DocCommand(source, number, -number, span))
    return commands


def _fenced_commands(source: str, text: str) -> list[DocCommand]:
    lines = text.splitlines()
    commands: list[DocCommand] = []
    index = 0
    block = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, ticks, lang = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[index + 1 : end]]
        named = re.match(r"^#\s+(/\S+\.ya?ml)\s*$", body[0]) if lang == "yaml" and body else None
        if named:
            block += 1
            content = "\n".join(body)
            path = named.group(1)
            text = f"mkdir -p \"$(dirname {path})\" && cat > {path} <<'DOC_FILE'\n{content}\nDOC_FILE"
            commands.append(DocCommand(source, index + 2, block, text, writes_file=True))
        if lang in SHELL_LANGS:
            block += 1
            found = (
                _console_commands(source, body, index + 2, block)
                if lang == "console"
                else _script_commands(source, body, index + 2, block)
            )
            expected = _output_block(lines, end + 1)
            if found and expected is not None:
                last = found[-1]
                found[-1] = DocCommand(last.source, last.line, last.block, last.text, expected, last.cwd)
            commands += found
        index = end + 1
    return commands


def _output_block(lines: list[str], start: int) -> tuple[str, ...] | None:
    """The lines of a ```text block that follows (blank lines between allowed), or None."""
    index = start
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines) or not re.match(r"^\s*```text\s*$", lines[index]):
        return None
    end = index + 1
    while end < len(lines) and not lines[end].strip().startswith("```"):
        end += 1
    return tuple(lines[index + 1 : end])


def _script_commands(source: str, body: list[str], first_line: int, block: int) -> list[DocCommand]:
    commands: list[DocCommand] = []
    index = 0
    while index < len(body):
        line = body[index]
        if not line.strip() or line.lstrip().startswith("#"):
            index += 1
            continue
        start = index
        parts = [line]
        while parts[-1].rstrip().endswith("\\") and index + 1 < len(body):
            index += 1
            parts.append(body[index])
        heredoc = _HEREDOC.search(" ".join(parts))
        if heredoc:
            while index + 1 < len(body):
                index += 1
                parts.append(body[index])
                if body[index].strip() == heredoc.group(1):
                    break
        commands.append(DocCommand(source, first_line + start, block, "\n".join(parts)))
        index += 1
    return commands


def _console_commands(source: str, body: list[str], first_line: int, block: int) -> list[DocCommand]:
    commands: list[DocCommand] = []
    index = 0
    while index < len(body):
        if not body[index].startswith("$ "):
            index += 1
            continue
        start = index
        parts = [body[index][2:]]
        while parts[-1].rstrip().endswith("\\") and index + 1 < len(body):
            index += 1
            parts.append(body[index].removeprefix("> "))
        output = []
        while index + 1 < len(body) and not body[index + 1].startswith("$ "):
            index += 1
            output.append(body[index])
        while output and not output[-1].strip():
            output.pop()
        commands.append(
            DocCommand(source, first_line + start, block, "\n".join(parts), tuple(output) if output else None)
        )
        index += 1
    return commands


# --- comparing output -------------------------------------------------------------------------------------

_VOLATILE = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<GUID>"),
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2}|\s[A-Z]{2,5}(?=\s|$))?"
        ),
        "<TIME>",
    ),
    (re.compile(r"\b\d+(\.\d+)?(ms|s)\b"), "<DURATION>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<HEX>"),
    # Accounts differ: the docs show CORP\svc-ccs-exporter, the simulator's is CCS\demo.
    (re.compile(r"\b[A-Z][A-Z0-9-]*\\[\w.-]+"), "<ACCOUNT>"),
)


def normalise(line: str) -> str:
    """A line with its volatile parts (GUIDs, times, durations, hashes) replaced and spaces collapsed."""
    for pattern, token in _VOLATILE:
        line = pattern.sub(token, line)
    return " ".join(line.split())


def output_problem(expected: tuple[str, ...], actual: str) -> str | None:
    """None when every documented output line appears, in order, in the actual output.

    `...` in a documented line stands for anything; lines are compared after `normalise`.
    """
    actual_lines = [normalise(line) for line in actual.splitlines()]
    position = 0
    for wanted in expected:
        if not wanted.strip() or wanted.strip() == "...":
            continue
        pattern = re.compile(
            "^" + ".*".join(re.escape(part) for part in normalise(wanted).split("...")) + "$"
        )
        while position < len(actual_lines) and not pattern.match(actual_lines[position]):
            position += 1
        if position == len(actual_lines):
            return f"the documented output line {wanted.strip()!r} is not in the output"
        position += 1
    return None


# --- running ----------------------------------------------------------------------------------------------


@dataclass
class PageServices:
    """What a page's commands run against: the simulator, the values filled in for placeholders."""

    sim_url: str
    ca_file: Path
    job_id: str
    run_id: str
    username: str = "CCS\\demo"
    password: str = "demo-password"


@dataclass
class _Block:
    """Per-block state: documented ports mapped to free ones, servers started (by pid)."""

    ports: dict[int, int] = field(default_factory=dict)
    own_simulator: bool = False
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def port(self, documented: int) -> int:
        if documented not in self.ports:
            self.ports[documented] = free_port()
        return self.ports[documented]


class DocRunner:
    """Runs one documented file's commands in order, in a work directory of their own."""

    def __init__(
        self, work: Path, services: PageServices, root: Path = REPO_ROOT, cannot_run: CannotRun = ()
    ) -> None:
        self.root = root
        self.cannot_run = cannot_run
        self.work = work
        self.services = services
        self.cwd = work / "repo"
        self.home = work / "home"
        self.env: dict[str, str] = {}
        self._prepare()

    # set-up

    def _prepare(self) -> None:
        self.cwd.mkdir(parents=True)
        self.home.mkdir()
        (self.work / "tmp").mkdir()
        (self.work / "etc" / "prometheus").mkdir(parents=True)
        for name in COPIED:
            source = self.root / name
            if source.is_dir():
                shutil.copytree(source, self.cwd / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy2(source, self.cwd / name)
        example = self.cwd / "config.example.yaml"
        if example.is_file():
            # The reader adapts the example to their machine: the same fill-ins as in the commands.
            text = example.read_text(encoding="utf-8").replace(
                "https://ccs.example.com:12431", self.services.sim_url
            )
            text = text.replace("CORP\\svc-ccs-exporter", self.services.username)
            text = _replace_paths(text, self.paths())
            example.write_text(text, encoding="utf-8")
        tools = self.root / ".tools"
        if tools.is_dir():
            (self.cwd / ".tools").symlink_to(tools)
        password_file = self.work / "ccs-password"
        password_file.write_text(self.services.password + "\n", encoding="utf-8")
        (self.cwd / "ccs-password").write_text(self.services.password, encoding="utf-8")
        config = self.work / "config.yaml"
        config.write_text(
            f"url: {self.services.sim_url}\n"
            f"username: {self.services.username}\n"
            f"password_file: {password_file}\n"
            f"ca_bundle: {self.services.ca_file}\n"
            f"job_ids: [{self.services.job_id}]\n"
            f"audit_log: {self.work / 'audit.jsonl'}\n",
            encoding="utf-8",
        )
        tools_bin = str(tools / "bin")
        self.env = {
            "PATH": os.pathsep.join(
                [tools_bin, str(Path(sys.executable).parent), os.environ.get("PATH", "")]
            ),
            "HOME": str(self.home),
            "TZ": "UTC",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": str(self.work / "tmp"),
            "CCS_EXPORTER_URL": self.services.sim_url,
            "CCS_EXPORTER_USERNAME": self.services.username,
            "CCS_EXPORTER_PASSWORD": self.services.password,
            "CCS_EXPORTER_CA_BUNDLE": str(self.services.ca_file),
            "CCS_EXPORTER_AUDIT_LOG": str(self.work / "audit.jsonl"),
            "CCS_EXPORTER_LOG_FORMAT": "console",
        }

    # filling in

    def paths(self) -> dict[str, str]:
        """Paths the docs name on the reader's machine, and where they are here."""
        work = str(self.work)
        return {
            "/etc/ccs-exporter/config/config.yaml": f"{work}/config.yaml",
            "/etc/ccs-exporter/config.yaml": f"{work}/config.yaml",
            "/run/secrets/ccs-password": f"{work}/ccs-password",
            "/etc/ccs-exporter/ccs-internal-ca.pem": str(self.services.ca_file),
            "/etc/ccs-exporter/audit-signing.key": f"{work}/audit-signing.key",
            "/var/lib/ccs-exporter/audit.jsonl": f"{work}/audit.jsonl",
            "/etc/prometheus/": f"{work}/etc/prometheus/",
            "/tmp/": f"{work}/tmp/",
        }

    def substitute(self, text: str, block: _Block) -> str:
        """The command with what the docs leave to the reader filled in for this machine."""
        work = str(self.work)
        sim = self.services.sim_url
        if not block.own_simulator:
            for documented in ("http://127.0.0.1:12431", "http://localhost:12431", "https://127.0.0.1:12431"):
                text = text.replace(documented, sim)
        text = text.replace("https://ccs.example.com:12431", sim)
        text = text.replace("ccs.example.com:12431", sim.removeprefix("https://").removeprefix("http://"))
        for documented in (r"CORP\\svc-ccs-exporter", r"CORP\\svc"):
            text = re.sub(documented + r"\b", lambda _m: self.services.username.replace("\\", "\\"), text)
        text = _replace_paths(text, self.paths())
        text = re.sub(r"(?<![$\w])JOB_ID\b|<job-id>", self.services.job_id, text)
        text = re.sub(r"(?<![$\w])RUN_ID\b|<run-id>", self.services.run_id, text)
        text = re.sub(r"(?<![$\w/])FILE\b(?!\.)", f"{work}/audit.jsonl", text)

        def port(found: re.Match[str]) -> str:
            return f"{found.group(1)}:{block.port(int(found.group(2)))}"

        return re.sub(
            r"(127\.0\.0\.1|localhost|\[::\]|0\.0\.0\.0):(12431|1243[2-9]|9879|988\d|9090)\b", port, text
        )

    def rewrite(self, text: str, block: _Block) -> str:
        """kubectl exec runs its command here; helm install and kubectl create do not reach a cluster."""
        exec_command = re.match(r"^kubectl\b[^|]*?\bexec\b.*?\s--\s+(.*)$", text, re.S)
        if exec_command:
            text = exec_command.group(1)
        if text.startswith("helm install") and "--dry-run" not in text:
            text = _append(text, "--dry-run=client")
        if re.match(r"^kubectl\b.*\bcreate (secret|configmap)\b", text, re.S):
            self._stand_in_files(text)
            text = _append(text, "--dry-run=client -o yaml")
        words = _words(text)
        if _is_ccs_exporter(words, "demo") and "--listen-address" not in text:
            text = _append(text, f"--listen-address 127.0.0.1:{block.port(9879)}")
        if _is_ccs_exporter(words, "simulate") and "--port" not in text:
            text = _append(text, f"--port {block.port(12431)}")
        return text

    def _stand_in_files(self, text: str) -> None:
        """Stand-ins for the reader's own files that a `kubectl create ... --from-file` reads."""
        for path in re.findall(r"--from-file=(?:[\w.-]+=)?(\S+)", text):
            target = self.cwd / path
            if not target.exists():
                target.write_text(f"stand-in for {path}\n", encoding="utf-8")

    # running

    def run(self, commands: list[DocCommand], known_failing: dict[str, str]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        blocks: dict[int, list[DocCommand]] = {}
        for command in commands:
            blocks.setdefault(command.block, []).append(command)
        for block_commands in blocks.values():
            block = _Block(own_simulator=any(_starts_simulator(c.text) for c in block_commands))
            try:
                for command in block_commands:
                    outcome = self._one(command, block)
                    outcomes.append(against_known(outcome, known_failing))
            finally:
                self._stop(block)
        return outcomes

    def _one(self, command: DocCommand, block: _Block) -> Outcome:
        reason = cannot_run_reason(command.text, self.cannot_run)
        if reason is not None:
            problem = parse_only(command.text)
            return Outcome(command, ran=False, problem=problem, note=reason)
        text = command.text
        for prefix, _checked in PREPARED:
            if text.startswith(prefix):
                text = text[len(prefix) :]
                installed = _installed_version()
                if installed != _project_version(self.root):
                    return Outcome(command, ran=True, problem=f"ccs-exporter {installed} installed")
        text = self.rewrite(self.substitute(text, block), block)
        cwd = self.cwd / command.cwd
        env = {**self.env}
        if _is_long_running(text):
            env["CCS_EXPORTER_LISTEN_ADDRESS"] = f"127.0.0.1:{block.port(9879)}"
            return Outcome(command, ran=True, problem=self._start_server(text, cwd, env, block))
        try:
            done = subprocess.run(
                ["bash", "-c", self._script(text)],
                cwd=cwd,
                env=env,
                capture_output=True,
                timeout=180,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return Outcome(command, ran=True, problem="did not finish within 180 s")
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            return Outcome(command, ran=True, problem=f"exit {done.returncode}: {_tail(output)}")
        if command.expected is not None:
            mismatch = output_problem(command.expected, output)
            if mismatch:
                return Outcome(command, ran=True, problem=f"{mismatch}; the output was: {_tail(output, 30)}")
        return Outcome(command, ran=True)

    def _script(self, text: str, keep_state: bool = True) -> str:
        """The command in a shell that has the variables and directory the page's earlier commands left."""
        state = self.work / "shell-state.sh"
        quoted = shlex.quote(str(state))
        lines = [
            "__before=\" $(compgen -v | tr '\\n' ' ') \"",
            f"[ -f {shlex.quote(str(state))} ] && . {shlex.quote(str(state))}",
            "set -o pipefail",
            text,
        ]
        if keep_state:
            lines += [
                "__rc=$?",
                '{ export -p; for __v in $(compgen -v); do case "$__before" in *" $__v "*) ;; *)'
                ' [[ $__v == __* ]] || declare -p "$__v";; esac; done; printf \'cd -- %q\\n\' "$PWD"; }'
                f" > {quoted}.new 2>/dev/null && mv {quoted}.new {quoted}",
                "exit $__rc",
            ]
        return "\n".join(lines) + "\n"

    def _start_server(self, text: str, cwd: Path, env: dict[str, str], block: _Block) -> str | None:
        log = self.work / f"server-{len(block.servers)}-{time.monotonic_ns()}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", self._script(text.rstrip().removesuffix("&"), keep_state=False)],
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        block.servers.append(process)
        probe = _readiness_probe(text, block, cwd)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = _tail(log.read_text(errors="replace"))
                return f"exited with {process.returncode} while starting: {output}"
            if probe():
                return None
            time.sleep(0.2)
        return f"did not answer within 90 s: {_tail(log.read_text(errors='replace'))}"

    def _stop(self, block: _Block) -> None:
        for process in reversed(block.servers):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("ccs-exporter")
    except importlib.metadata.PackageNotFoundError:
        return None


def _project_version(root: Path) -> str:
    found = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else "?"


def _append(text: str, arguments: str) -> str:
    """The command with ``arguments`` added at its end, before a trailing `# comment`."""
    body, comment = re.match(r"^(.*?)(\s+#[^'\"]*)?$", text, re.S).groups()  # type: ignore[union-attr]
    return f"{body} {arguments}{comment or ''}"


def _replace_paths(text: str, paths: dict[str, str]) -> str:
    """Each documented path replaced once (a replacement is never replaced again), where a path starts."""
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    return re.sub(rf"(?<![\w/.-])(?:{alternatives})", lambda found: paths[found.group(0)], text)


def against_known(outcome: Outcome, known_failing: dict[str, str]) -> Outcome:
    """A known failure is noted, not failed; a known failure that now passes must leave the table."""
    key = f"{outcome.command.source}: {outcome.command.text}"
    if key not in known_failing:
        return outcome
    if outcome.problem is None:
        outcome.problem = "listed in KNOWN_FAILING but passes now: remove it from the table"
    else:
        outcome.note = f"known failing ({known_failing[key]}): {outcome.problem}"
        outcome.problem = None
    return outcome


def _words(text: str) -> list[str]:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return text.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def _is_ccs_exporter(words: list[str], command: str) -> bool:
    if words[:1] == ["ccs-exporter"]:
        rest = words[1:]
    elif words[:3] in (["python", "-m", "ccs_exporter"], ["python3", "-m", "ccs_exporter"]):
        rest = words[3:]
    else:
        return False
    positional = [w for w in rest if not w.startswith("-")]
    return positional[:1] == [command]


def _starts_simulator(text: str) -> bool:
    return _is_ccs_exporter(_words(text), "simulate")


def _is_long_running(text: str) -> bool:
    words = _words(text)
    if text.rstrip().endswith("&") and not text.rstrip().endswith("&&"):
        return True
    if any(_is_ccs_exporter(words, name) for name in ("serve", "demo", "simulate")):
        return True
    return words[:1] == ["prometheus"]


def _readiness_probe(text: str, block: _Block, cwd: Path) -> Callable[[], bool]:
    words = _words(text)
    if _is_ccs_exporter(words, "simulate"):
        port = int(_flag_value(words, "--port") or block.port(12431))
        ids_file = _flag_value(words, "--job-ids-file")
        return lambda: _tcp_open(port) and (ids_file is None or (cwd / ids_file).is_file())
    if words[:1] == ["prometheus"]:
        address = _flag_value(words, "--web.listen-address") or "127.0.0.1:9090"
        return lambda: _http_ok(f"http://{address}/-/ready")
    address = (
        _flag_value(words, "--listen-address")
        or _flag_value(words, "--web.listen-address")
        or f"127.0.0.1:{block.port(9879)}"
    )
    address = address.replace("0.0.0.0", "127.0.0.1")
    return lambda: _http_ok(f"http://{address}/readyz")


def _flag_value(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words):
        if word == flag and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _http_ok(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=2).status_code == 200
    return False


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def cannot_run_reason(text: str, cannot_run: CannotRun) -> str | None:
    """The reason a documented command cannot run here, or None when it runs."""
    for pattern, reason in cannot_run:
        if re.search(pattern, text, re.M):
            return reason
    return None


def parse_only(text: str) -> str | None:
    """Checks a command that cannot run: bash accepts it, and the CLI's parser its ccs-exporter parts."""
    checked = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        return f"bash -n: {checked.stderr.strip()}"
    if text.strip().startswith("python3 -m pytest"):
        ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
        # The command of .ci/run's step "tests (the README's test command)".
        step = ci[max(ci.find('step "tests (the README'), 0) :]
        test_lines = [
            line.strip() for line in step.splitlines() if line.strip().startswith("python3 -m pytest")
        ]
        if test_lines[:1] != [text.strip()]:
            return f"the README's test command is not .ci/run's ({test_lines[:1]})"
        return None
    for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", text.replace("\\\n", " ")):
        words = _words(part)
        if words[:1] == ["ccs-exporter"]:
            problem = cli_parse_problem(words[1:])
            if problem:
                return problem
    return None


def cli_parse_problem(argv: list[str]) -> str | None:
    """None when ccs-exporter's own argument parser accepts ``argv``; else what it said."""
    checked = subprocess.run(
        [sys.executable, "-c", _PARSE_SNIPPET, *argv], capture_output=True, text=True, check=False, timeout=60
    )
    if checked.returncode != 0:
        return f"the CLI's parser refuses it: {checked.stderr.strip().splitlines()[-1:]}"
    return None


_PARSE_SNIPPET = (
    "import sys\nfrom ccs_exporter.cli import build_parser\nbuild_parser().parse_args(sys.argv[1:])\n"
)


def run_file(
    work: Path,
    services: PageServices,
    source: str,
    root: Path = REPO_ROOT,
    known: dict[str, str] | None = None,
    cannot_run: CannotRun = (),
) -> list[Outcome]:
    """Collect and run the commands of one documented file (relative to ``root``)."""
    runner = DocRunner(work, services, root, cannot_run)
    return runner.run(collect(root, source), known or {})


def failures(outcomes: list[Outcome]) -> Iterator[str]:
    for outcome in outcomes:
        if outcome.problem:
            yield f"{outcome.command.where}: {outcome.command.text!r}: {outcome.problem}"

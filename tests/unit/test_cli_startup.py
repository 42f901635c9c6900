"""Issue 13, "Fast CLI": `sharedctx --help` must not import the machinery that only commands need.

Start-up time itself is measured in bench/startup.py, never asserted here (the machine is shared). What is
asserted is the cause of the time: which modules a fresh interpreter has loaded after `import sharedctx`,
after `import sharedctx.cli` and after `sharedctx --help` has actually rendered. Each check runs in its own
subprocess, because this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer import main as typer_main

import sharedctx
from sharedctx import cli
from sharedctx.config import CONFIG_ENV, CONFIG_NAME
from sharedctx.model import EntryKind

# What `--help` must not pay for: each costs tens of milliseconds or pulls in a tree that does.
HEAVY = ("httpx", "mcp", "psycopg", "pydantic", "pydantic_core", "detect_secrets", "requests", "anyio",
         "starlette", "uvicorn", "sharedctx.store", "sharedctx.context", "sharedctx.config",
         "sharedctx.model", "sharedctx.backends", "sharedctx.redact", "sharedctx.delivery", "sharedctx.server",
         "sharedctx.agents", "sharedctx.search", "sharedctx.mcp_server", "sharedctx.mcp")

TYPER_NEEDS = ("pydantic", "pydantic_core")

_REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"


def _loaded_after(code: str, tmp_path: Path) -> set[str]:
    """Run `code` in a fresh interpreter (cwd: an empty folder) and return the modules it had loaded."""
    env = {k: v for k, v in os.environ.items() if k != "SHAREDCTX_CONFIG"} | {"COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", f"{code}\n{_REPORT}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules: set[str] = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    return modules


def _loaded_and_output(code: str, tmp_path: Path) -> tuple[set[str], str]:
    """`_loaded_after`, also returning what the code printed (no arguments: the help goes to stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "SHAREDCTX_CONFIG"} | {"COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", f"{code}\n{_REPORT}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1])), proc.stdout + proc.stderr


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_import_sharedctx_loads_no_submodule(tmp_path: Path) -> None:
    loaded = _loaded_after("import sharedctx", tmp_path)
    assert sorted(m for m in loaded if m.startswith("sharedctx.")) == []
    assert _heavy(loaded) == []


def test_import_cli_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    assert _heavy(_loaded_after("import sharedctx.cli", tmp_path)) == []


@pytest.mark.parametrize("argv", [["--help"], []], ids=["help", "no-args"])
def test_rendering_help_loads_none_of_the_heavy_modules(tmp_path: Path, argv: list[str]) -> None:
    """Through `main()`, exactly as the console script runs it: logging set-up and the help renderer included."""
    loaded, shown = _loaded_and_output(_run_main(argv), tmp_path)
    assert "Commands:" in shown and "backends" in shown  # the help really was rendered
    assert _heavy(loaded) == []
    assert "typer.rich_utils" not in loaded  # plain help: no rich.markdown, rich.traceback, pygments
    assert "rich.console" not in loaded  # the consoles are made when a command first prints
    assert not {f"sharedctx.cli.{m}" for m in ("case", "journal", "outbox", "worker")} - loaded  # the list reads them


@pytest.mark.parametrize("argv", [["case", "--help"], ["record", "--help"], ["serve", "--help"],
                                  ["case", "list", "--help"]])
def test_a_commands_help_loads_only_what_typer_itself_needs(tmp_path: Path, argv: list[str]) -> None:
    """Typer (>= 0.2x) builds a command's parameters with pydantic TypeAdapters, so one command's help pays for
    pydantic; it must still not pay for ours (store, context, backends, redaction, httpx, mcp)."""
    loaded, shown = _loaded_and_output(_run_main(argv), tmp_path)
    assert "Usage: sharedctx" in shown and "--help" in shown
    assert [m for m in _heavy(loaded) if not m.startswith(TYPER_NEEDS)] == []


def _run_main(argv: list[str]) -> str:
    return ("import sys\nfrom sharedctx.cli import main\n"
            f"sys.argv = ['sharedctx', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, 2, None), exc.code\n")


def test_commands_still_load_what_they_need(tmp_path: Path) -> None:
    """The other side of laziness: a real command opens the context (and fails cleanly on a missing case)."""
    code = ("import sys\nfrom sharedctx.cli import main\nsys.argv = ['sharedctx', 'timeline', 'NOPE']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 3, exc.code\n")
    loaded = _loaded_after(code, tmp_path)
    assert {"sharedctx.context", "sharedctx.store.sqlite", "pydantic"} <= loaded


# What a read-only command (`case list`) must not pay for: the secret detectors (detect-secrets pulls in
# requests), the HTTP client, asyncio, and the delivery worker with the metrics and tracing libraries behind it.
NOT_FOR_READING = ("detect_secrets", "requests", "httpx", "asyncio", "prometheus_client", "opentelemetry",
                   "sharedctx.delivery", "sharedctx.observability", "sharedctx.backends.github", "mcp")


def test_case_list_opens_the_journal_without_the_write_and_delivery_machinery(tmp_path: Path) -> None:
    """`sharedctx case list` on a journal with a case in it: it really lists (the case's title is printed), and
    loads none of NOT_FOR_READING (issue 13: `case list` ≤ 0.4 s; bench/startup.py measures the time)."""
    setup = subprocess.run([sys.executable, "-m", "sharedctx.cli", "case", "open", "Disk full on db-7"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "SHAREDCTX_CONFIG"})
    assert setup.returncode == 0, setup.stderr
    code = ("import sys, io, contextlib\nfrom sharedctx.cli import main\nsys.argv = ['sharedctx', 'case', 'list']\n"
            "buf = io.StringIO()\n"
            "try:\n    with contextlib.redirect_stdout(buf):\n        main()\n"
            "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            "assert 'Disk full on db-7' in buf.getvalue(), buf.getvalue()\n")
    loaded = _loaded_after(code, tmp_path)
    assert "sharedctx.store.sqlite" in loaded  # the journal really was opened
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in NOT_FOR_READING)) == []


def test_log_redaction_is_installed_but_built_on_the_first_record(tmp_path: Path) -> None:
    """`main()` still redacts everything this process logs; it just compiles the redactor when first needed."""
    token = "ghp_" + "Ab3" * 12
    code = ("import logging, sys\nimport sharedctx.cli as cli\n"
            "def app():\n"
            "    assert 'sharedctx.redact' not in sys.modules\n"
            f"    logging.getLogger('sharedctx.demo').warning('pushing with %s', {token!r})\n"
            f"    logging.getLogger('other').error('Authorization: token {token}')\n"
            "cli.app = app\ncli.main()\n")
    env = {k: v for k, v in os.environ.items() if k != "SHAREDCTX_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert token not in proc.stderr and token[:12] not in proc.stderr
    assert proc.stderr.count("[REDACTED:") == 2, proc.stderr
    assert "WARNING sharedctx.demo: pushing with" in proc.stderr  # the format main() sets, unchanged


def test_lazy_exports_are_the_defining_modules_objects() -> None:
    import importlib

    assert set(sharedctx.__all__) == set(sharedctx._EXPORTS)
    for name, module in sharedctx._EXPORTS.items():
        assert getattr(sharedctx, name) is getattr(importlib.import_module(module, "sharedctx"), name), name
    assert set(sharedctx.__all__) <= set(dir(sharedctx))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = sharedctx.Nope
    namespace: dict[str, object] = {}
    exec("from sharedctx import *", namespace)
    assert namespace["SharedContext"] is sharedctx.SharedContext


def test_cli_copies_of_config_and_model_constants_match_their_sources() -> None:
    """sharedctx.cli keeps copies so that loading it needs neither config nor model (both import pydantic)."""
    assert (cli.CONFIG_NAME, cli.CONFIG_ENV) == (CONFIG_NAME, CONFIG_ENV)
    assert tuple(k.value for k in EntryKind) == cli.ENTRY_KINDS


def test_case_list_builds_only_the_case_group() -> None:
    """Lazy registration: running `case list` builds the click command of `case` and of nothing else."""
    import contextlib
    import io

    from sharedctx.cli.app import COMMANDS, LazyGroup

    group = typer_main.get_command(cli.app)
    assert isinstance(group, LazyGroup)
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        code = group.main(["case", "list", "--help"], prog_name="sharedctx", standalone_mode=False)
    assert code == 0 and "List cases, newest first." in shown.getvalue()
    assert set(group.commands) == {"case"}
    assert group.list_commands(None) == list(COMMANDS)  # type: ignore[arg-type]


def test_a_mistyped_command_is_matched_against_every_command() -> None:
    """typer suggests from the commands already built; none is built when the name is mistyped."""
    import contextlib
    import io

    group = typer_main.get_command(cli.app)
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown), pytest.raises(SystemExit) as exited:
        group.main(["bakends", "list"], prog_name="sharedctx")
    assert exited.value.code == 2
    assert "No such command 'bakends'. Did you mean 'backends'?" in shown.getvalue()


def test_the_command_list_reads_as_the_built_commands_do() -> None:
    """`--help` lists stand-ins made from the registrations; each must say what the real command would."""
    from sharedctx.cli.app import COMMANDS, build_command, listing_stub

    group = typer_main.get_command(cli.app)
    for name in COMMANDS:
        real, stub = build_command(name, group), listing_stub(name)  # type: ignore[arg-type]
        assert (stub.help, stub.hidden) == (real.help, real.hidden), name
        for limit in (45, 80):
            assert stub.get_short_help_str(limit) == real.get_short_help_str(limit), name
        assert stub.callback is None and stub.params == []  # nothing of the real command was built


def test_every_command_module_is_registered() -> None:
    """A command added to a module of sharedctx.cli but not to COMMANDS would be silently missing."""
    import importlib
    import pkgutil

    import typer

    import sharedctx.cli as pkg
    from sharedctx.cli.app import COMMANDS

    registered = {(m, a) for m, a in COMMANDS.values()}
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name == "__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(f"sharedctx.cli.{mod.name}")
        for attr, value in vars(module).items():
            if isinstance(value, typer.Typer) and mod.name != "app":
                assert (mod.name, attr) in registered, f"{mod.name}.{attr}"
                if attr == "commands":
                    names = {i.name or typer_main.get_command_name(i.callback.__name__)  # type: ignore[union-attr]
                             for i in value.registered_commands}
                    assert names <= set(COMMANDS), names - set(COMMANDS)

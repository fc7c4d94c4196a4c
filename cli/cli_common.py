"""What every `journey` command shares: the consoles, the runtime settings read once per
command, one-line errors (`friendly`), progress bars, and taxonomy + training settings."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from journey_stage.core.errors import JourneyError
from journey_stage.core.runtime import RuntimeSettings, redact

console = Console(stderr=True)
out = Console()
STATE: dict = {"debug": False, "runtime": None}


def runtime() -> RuntimeSettings:
    """This command's runtime settings (read from the environment when the command started)."""
    if STATE["runtime"] is None:
        STATE["runtime"] = RuntimeSettings.from_env()
    return STATE["runtime"]


@contextmanager
def friendly() -> Iterator[None]:
    """One clear line plus a hint, non-zero exit, no traceback (unless --debug)."""
    try:
        yield
    except JourneyError as exc:
        if STATE["debug"]:
            raise
        _print_error(exc.message, exc.hint)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: no partial output was written.")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a defect or an unforeseen fault: still one line
        if STATE["debug"]:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _print_error(f"unexpected {type(exc).__name__}: {first}", "rerun with --debug for the full traceback, and report it if it looks like a bug.")
        raise typer.Exit(3) from None


def _print_error(message: str, hint: str) -> None:
    """One line, then the hint; credentials in URLs are never shown."""
    console.print(f"[bold red]error:[/] {redact(message)}", highlight=False, soft_wrap=True, markup=True)
    if hint:
        console.print(f"[yellow]hint:[/] {redact(hint)}", highlight=False, soft_wrap=True)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console, transient=True)


def taxonomy_and_settings(events: Path, taxonomy: str | None, config: Path | None, horizon: list[str], overrides: dict):
    from journey_stage.core.io import taxonomy_hint
    from journey_stage.core.settings import build_settings, parse_horizon_flags, read_config_file
    from journey_stage.core.taxonomy import load_taxonomy

    cfg = read_config_file(config) if config else {}
    name = taxonomy or cfg.get("taxonomy") or taxonomy_hint(events) or "five_stage"
    tax = load_taxonomy(name)
    cli = {k: v for k, v in overrides.items() if v is not None}
    hz = parse_horizon_flags(horizon)
    if hz:
        cli["horizons"] = hz
    settings = build_settings(tax.settings, cfg, cli | {"taxonomy": name}, source=str(config or "settings"))
    return tax, settings

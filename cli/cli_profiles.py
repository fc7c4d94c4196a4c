"""`journey profiles`: the live profile store (JOURNEY_PROFILE_STORE) from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from journey_stage.cli_common import friendly, out, progress_bar, runtime, taxonomy_and_settings


def _open_store():
    """The configured store; a one-line error when profiles are off (JOURNEY_PROFILE_STORE=none)."""
    from journey_stage.core.errors import ConfigError
    from journey_stage.serving.profiles import store_from_settings

    store = store_from_settings(runtime())
    if store is None:
        raise ConfigError("JOURNEY_PROFILE_STORE=none: no profile store is configured.",
                          "unset JOURNEY_PROFILE_STORE (profiles.db under JOURNEY_HOME) or set it to sqlite:///PATH or redis://HOST:PORT/DB.")
    return store


profiles_app = typer.Typer(help="The live profile store (JOURNEY_PROFILE_STORE): load event files, erase a customer.", no_args_is_help=True)


@profiles_app.command("load")
def profiles_load(
    events: Path = typer.Option(..., "--events", help="Events file or folder (Parquet, CSV, JSON Lines)."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Divert invalid rows here instead of failing."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Preset name or TOML file (default: the file's preset or five_stage)."),
) -> None:
    """Backfill the profile store from event files (validated like batch scoring; exact duplicates stored once)."""
    with friendly():
        from journey_stage.serving.profiles_load import load_events

        tax, _ = taxonomy_and_settings(events, taxonomy, None, [], {})
        store = _open_store()
        try:
            with progress_bar() as bar:
                task = bar.add_task("loading", total=None)
                counts = load_events(store, events, tax, rejects=rejects, on_unit=lambda i, n: bar.update(task, completed=i, total=n))
        finally:
            store.close()
        out.print(f"stored {counts['stored']:,} events ({counts['duplicates']:,} exact duplicates ignored, "
                  f"{counts['rejected']:,} rows rejected) from {counts['rows']:,} rows", highlight=False)


@profiles_app.command("delete")
def profiles_delete(customer: str = typer.Option(..., "--customer", help="The customer id whose stored events are erased.")) -> None:
    """Erase every stored event of one customer."""
    with friendly():
        store = _open_store()
        try:
            n = store.delete(customer)
        finally:
            store.close()
        out.print(f"erased {n:,} stored event(s) of customer {customer!r}", highlight=False)


"""``liaison fleet CONFIG``: load the config, open the store, serve until Ctrl+C."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

# The fleet's objects are short-lived and free themselves (reference counts). With Python's default
# thresholds the collector ran 2,400 times in a 200-booth benchmark, each time re-scanning the store's
# backlog: 30% of the process's CPU. Larger young generations still reclaim the few cycles it makes.
GC_THRESHOLDS = (100_000, 50, 100)


def run_fleet(config_path: Path, store: Optional[str], port: Optional[int], log_level: str,
              fail: Callable[..., None]) -> None:
    """Run the fleet service in this process (``fail(message)`` exits with a usage error)."""
    from .config import ConfigError, load_config
    from .service import FleetService
    from .store import StoreError, redact

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc))
    if store:
        config.fleet.store = store
    if port is not None:
        config.fleet.port = port
    service = FleetService(config)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # what was made to start (modules, config) is never scanned again

    async def main() -> None:
        task = asyncio.create_task(service.serve(install_signals=True))
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if service.ready.is_set():
            settings = config.fleet
            shown = f"[{settings.host}]" if ":" in settings.host else settings.host
            fragment = "" if settings.no_auth else f"#token={settings.token}"
            typer.echo(f"Liaison fleet: {len(config.booth)} booths")
            typer.echo(f"  Store:     {redact(config.store_url())}")
            typer.echo(f"  Dashboard: http://{shown}:{service.port}/{fragment}")
            if settings.generated_token:
                typer.echo(f"  Token:     {settings.token}   (generated; set [fleet] token to fix it)")
            if settings.observer_token:
                typer.echo(f"  Observers: http://{shown}:{service.port}/#token={settings.observer_token}   (view only)")
            typer.echo("Press Ctrl+C to stop.")
            sys.stdout.flush()
        await task

    try:
        asyncio.run(main())
    except StoreError as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"cannot serve the fleet on {config.fleet.host}:{config.fleet.port}: {exc.strerror or exc}")

"""Every run is a W&B run: group = table, tags = paper/preset/cell, config = resolved config.

Mode `auto` (the default) is online only when the user is logged in (WANDB_API_KEY or a netrc
entry for the W&B host) and offline otherwise, so nobody needs an account and nothing waits on a
network that is not there. Offline runs stay under the run folder (`<run>/wandb/`) and can be
uploaded later with `wandb sync <run>/wandb/offline-run-*`. `off` disables the mirror.
"""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path

MODES = ("auto", "online", "offline", "off")
PROJECT_ENV = "WANDB_PROJECT"
# Keys whose values must never reach a config, log or report.
SECRET_MARKERS = ("key", "token", "secret", "password")


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str | None) -> str:
    mode = (mode or os.environ.get("REPRO_WANDB") or "auto").lower()
    if mode not in MODES:
        from repro.errors import ConfigError

        raise ConfigError(f"unknown W&B mode {mode!r}; choose one of {', '.join(MODES)}")
    if os.environ.get("WANDB_MODE") in ("disabled", "offline", "online") and mode == "auto":
        return {"disabled": "off"}.get(os.environ["WANDB_MODE"], os.environ["WANDB_MODE"])
    if mode == "auto":
        return "online" if logged_in() else "offline"
    return mode


def scrub(config: dict) -> dict:
    """Drop anything that looks like a credential before it is written anywhere."""
    clean = {}
    for k, v in config.items():
        if any(m in str(k).lower() for m in SECRET_MARKERS):
            continue
        clean[k] = scrub(v) if isinstance(v, dict) else v
    return clean


def make_logger(cell, run_dir: Path, mode: str | None = None):
    """A Lightning WandbLogger for the cell, or None when the mirror is off or W&B fails to start."""
    mode = resolve_mode(mode)
    if mode == "off":
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb

        timeout = float(os.environ.get("REPRO_WANDB_INIT_TIMEOUT", "30"))
        # By default W&B records the command line (argv), the program path, git state (a remote
        # URL may carry a token) and the host's metadata. argv holds whatever a user typed, a
        # secret included, so none of it is recorded: the run is its scrubbed config and its id.
        settings = wandb.Settings(init_timeout=timeout, silent=True, console="off", mode=mode,
                                  x_disable_meta=True, disable_git=True, save_code=False, disable_code=True,
                                  program="repro", x_disable_machine_info=True)
        logger = WandbLogger(
            project=os.environ.get(PROJECT_ENV, "repro"),
            group=cell.table_id,
            name=f"{cell.table_id}:{cell.row}|{cell.column}:s{cell.seed}",
            id=cell.id,  # stable: a requeued or resumed run continues the same W&B run
            resume="allow",
            save_dir=str(run_dir),
            tags=[cell.paper, cell.preset_name, f"cell:{cell.id}"],
            config=scrub(cell.resolved_config()),
            mode=mode,
            settings=settings,
        )
        # Lightning always passes anonymous=None, which current wandb warns about on every run
        # ("anonymous setting has no effect"); the key means nothing to wandb any more.
        getattr(logger, "_wandb_init", {}).pop("anonymous", None)
        logger.experiment  # start W&B now, where its failure can be caught, not mid-training
        return logger
    except Exception as exc:  # W&B trouble must never cost a result
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(
            f"W&B could not start ({first_line}); training goes on and results land in the store. "
            f"Later: `repro sync --store {run_dir.parent}` (or `wandb sync`)."
        )
        return None

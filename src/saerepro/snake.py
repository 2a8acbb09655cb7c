"""Glue for ``workflow/scripts``: log redirection and config loading for one Snakemake job."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from .allocator import keep_freed_memory
from .config import load_config
from .pilot import apply_pilot

_LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def job(snakemake):
    """Send the job's stdout, stderr and logging to its ``log:`` file; yield the typed config.

    Exceptions are logged with their traceback and re-raised, so Snakemake marks the job failed.
    """
    log_path = Path(snakemake.log[0])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # before the redirect: the console says where this job's progress bars and messages go
    print(
        f"saerepro: {getattr(snakemake, 'rule', 'job')} is logging to {log_path.resolve()} "
        "(tail -f it to follow the progress)",
        file=sys.stderr,
        flush=True,
    )
    keep_freed_memory()  # up to 3x faster SAE steps, bit-identical results (saerepro.allocator)
    threads = getattr(snakemake, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    with open(log_path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(_LOG_FORMAT)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            # pilot mode: the grids of the pilots that have run (saerepro.pilot.apply_pilot)
            yield apply_pilot(load_config(dict(snakemake.config)))
        except BaseException:
            logging.getLogger("saerepro").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def logging_to(log_path: str | Path):
    """Also send saerepro's log records to ``log_path`` (appending) for the duration."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(_LOG_FORMAT)
    logger = logging.getLogger("saerepro")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def hook_point_of(path: str) -> tuple[int, str]:
    """(layer, site) from a path containing ``/L{layer}/{site}/``."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("L") and part[1:].isdigit():
            return int(part[1:]), parts[i + 1]
    raise ValueError(f"no /L<layer>/<site>/ in {path}")


__all__ = ["hook_point_of", "job", "logging_to"]

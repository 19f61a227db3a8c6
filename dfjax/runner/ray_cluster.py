"""Reaching a Ray cluster: import Ray with an install hint, probe an address in seconds
(Ray itself retries one for 20 s or more before it fails), connect or start one here.
Ray is an optional extra (`pip install 'dfjax[ray]'`); nothing here needs it at import.
"""

from __future__ import annotations

import socket
import threading

from dfjax import settings

INSTALL_HINT = "pip install 'dfjax[ray]'"
CONNECT_TIMEOUT_S = 5.0


class RayExecutorError(RuntimeError):
    """The Ray executor cannot run: Ray not installed, no cluster at the address, too few
    CPUs for the workers asked for, or every worker dead."""


def import_ray():
    """The `ray` module, or RayExecutorError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RayExecutorError(
            f"the Ray executor needs Ray, which is not installed here: {INSTALL_HINT}") from e
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise RayExecutorError naming `address` unless a Ray cluster answers there within
    about 2 x `timeout` seconds: a TCP connection opens, then (HOST:PORT only) Ray's GCS
    answers (`_gcs_answers`). "ray://HOST:PORT" (Ray Client) gets the TCP check; "auto"
    and "local" are Ray's own look-ups and are not probed. Ray itself retries an address
    for 20 s or more before it fails; this fails in seconds."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayExecutorError(f"Ray address {address!r} is not HOST:PORT "
                               "(e.g. 10.0.0.5:6379, as `ray start --head` prints) or 'auto'")
    hint = "start one there with `ray start --head`, or check the host and port"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayExecutorError(f"no Ray cluster answers at {address} ({reason}, within "
                               f"{timeout:.0f} s): {hint}") from e
    if not address.startswith("ray://") and (problem := _gcs_answers(address, timeout)):
        raise RayExecutorError(f"no Ray cluster answers at {address}: the port is open but "
                               f"{problem}: {hint}")


def _gcs_answers(address: str, timeout: float) -> str | None:
    """What is wrong with Ray's GCS at `address` (one that answers as something else, or
    not within `timeout` s), or None: it answers, or this Ray has no client we know to ask
    (ray.init decides then). The client runs in a daemon thread, which ends on its own."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return None
    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            GcsClient(address=address)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 -- reported to the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=ask, daemon=True, name="dfjax-ray-gcs-probe")
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no Ray GCS answers there within {timeout:.0f} s"
    error = outcome[0]
    if error is None or not type(error).__name__.startswith("Rpc"):  # e.g. an API change
        return None
    return f"it does not answer as a Ray GCS ({str(error).strip().splitlines()[0]})"


def connect(address: str | None) -> bool:
    """Connect to the Ray cluster at `address` (probed first, `check_address`), or start
    one on this machine (None: every CPU here), or use the connection this process has
    (to that address, if one is given). Returns whether this call connected (so the
    caller disconnects)."""
    ray = import_ray()
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current):
            raise RayExecutorError(f"this process is already connected to the Ray cluster "
                                   f"at {current}, not {address}: leave out the address")
        return False
    settings.keep_ray_usage_stats_local()  # nothing leaves the machine
    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=address, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"at {address}" if address else "started on this machine"
        raise RayExecutorError(f"no Ray cluster {where}: {e}") from e
    return True

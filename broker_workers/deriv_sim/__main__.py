"""``python -m broker_workers.deriv_sim [--host H] [--port P]``: run the simulator with uvicorn.

The port defaults to ``DERIV_SIM_PORT``, so the Procfile line needs no arguments.
"""

from __future__ import annotations

import argparse

import uvicorn

from broker_workers.deriv_sim.settings import get_settings
from core.logs import configure_logging


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m broker_workers.deriv_sim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args()
    configure_logging(settings, "deriv_sim")
    uvicorn.run(
        "broker_workers.deriv_sim.app:app",
        host=args.host,
        port=args.port,
        log_config=None,
        ws_ping_interval=None,
    )


if __name__ == "__main__":
    main()

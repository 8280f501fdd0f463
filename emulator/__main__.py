"""`python -m emulator --host 127.0.0.1 --port 12111 --webhook-url URL --webhook-secret whsec_…`"""

from __future__ import annotations

import logging

import uvicorn

from emulator.app import DropFilter, create_app
from emulator.config import parse_args


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()

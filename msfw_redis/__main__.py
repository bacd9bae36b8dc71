"""``python -m msfw_redis``: the ``msfw-redis`` command (see ``msfw_redis._cli.main``)."""

from __future__ import annotations

from msfw_redis._cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())

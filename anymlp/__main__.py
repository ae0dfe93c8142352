"""``python -m anymlp train`` / ``python -m anymlp info``; see :mod:`anymlp.cli`."""

from anymlp.cli import main

raise SystemExit(main())

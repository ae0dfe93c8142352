"""``python -m anymlp train`` / ``python -m anymlp info``; see :mod:`anymlp.cli`."""

import sys

try:
    from anymlp.cli import main  # (imports NumPy and scikit-learn: a second or so)
except KeyboardInterrupt:
    print("anymlp: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())

"""``python -m anymlp train`` / ``python -m anymlp info``; see :mod:`anymlp.cli`."""

import sys

try:
    from anymlp.cli import main
except KeyboardInterrupt:  # (NumPy is loading: scikit-learn loads later, inside main)
    print("anymlp: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())

"""``python -m cnnlab COMMAND``: the ``cnnlab`` command; ``setup`` runs before the packages exist."""

import sys

if sys.argv[1:2] == ["setup"]:
    from cnnlab.install import main as setup

    sys.exit(setup(sys.argv[2:]))

from cnnlab.cli import main  # noqa: E402

sys.exit(main())

import sys

from wirechat.cli import main

sys.exit(main())

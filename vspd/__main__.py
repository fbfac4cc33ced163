import sys

from vspd.cli import main

sys.exit(main())

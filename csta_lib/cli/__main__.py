import sys

from csta_lib.cli import main

sys.exit(main())

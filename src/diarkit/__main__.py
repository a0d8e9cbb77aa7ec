import sys

from diarkit.cli import main

sys.exit(main())

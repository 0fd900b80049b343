import sys

from densehybrid_ros.cli import main

sys.exit(main())

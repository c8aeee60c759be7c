import sys

from core.cli import run_main
from train.cli import main

sys.exit(run_main(main))

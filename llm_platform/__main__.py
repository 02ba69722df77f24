"""`python -m llm_platform`: the llm-platform command (llm_platform/cli.py)."""
import sys

from llm_platform.cli import main

sys.exit(main())

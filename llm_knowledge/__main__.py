import sys

from llm_knowledge.cli import main

sys.exit(main())

import sys

from benchmark.allocator import keep_freed_memory
from benchmark.cli import main

keep_freed_memory()
sys.exit(main())

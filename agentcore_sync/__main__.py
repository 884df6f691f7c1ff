"""``python -m agentcore_sync``: the same command line as ``agentcore-sync``."""

from .cli import main

if __name__ == "__main__":
    main()

"""``python -m metasparse.cli``."""

from metasparse.cli import main

if __name__ == "__main__":
    main()

"""Allow ``python -m omneo_status``."""

from omneo_status.cli import main

if __name__ == "__main__":
    main()

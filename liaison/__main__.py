"""``python -m liaison``: the same as the ``liaison`` command."""

from .cli import main

if __name__ == "__main__":
    main()

"""``python -m coordscope``: the same as the ``coordscope`` command."""

from coordscope.cli import main

main()

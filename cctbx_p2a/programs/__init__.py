"""Command-line programs of cctbx_p2a (cctbx ProgramTemplate style).

Each module holds a ``Program`` and a ``main()`` for its console script
(see pyproject.toml); programs call library functions only.
"""

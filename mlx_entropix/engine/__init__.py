"""The engine: prompts in, events out (``generate.py`` the door, ``batch.py`` the one loop)."""

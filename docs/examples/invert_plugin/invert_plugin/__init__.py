"""A minimal InstructIR Desktop plugin (the host reads plugin.toml; the code is in actions.py)."""

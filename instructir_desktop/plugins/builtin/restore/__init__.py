"""The InstructIR restore action as a plugin (manifest in plugin.toml, code in actions.py)."""

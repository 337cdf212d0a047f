"""Photo tools for InstructIR Desktop (a plugin): the actions live in ``actions.py``."""

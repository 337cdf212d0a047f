"""The editing core: everything the editor decides, with no Qt.

An ``EditingSession`` holds the open photo and its history (``workspace``), reads and writes files
(``files``), and answers the person's messages (``assistant``: the conversation as data, the queue
of runs, follow-ups). It reaches the engine only through the plugin host and the engine client,
and tells whoever renders it what changed through one dispatcher of typed events. The UI draws
that state and sends intents; a headless test drives the same session with a fake engine.
"""

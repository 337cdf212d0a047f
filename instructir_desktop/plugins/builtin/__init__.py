"""Plugins that ship inside the application, discovered through the same path as any other."""

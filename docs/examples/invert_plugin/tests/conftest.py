pytest_plugins = ["instructir_desktop.plugins.testing"]

"""Settings: one ``Settings`` read once from flags, environment, YAML file and secrets, then passed down.

``config`` holds the settings and their sources, ``inputs`` the one YAML loader and its caps, ``checks`` the
checks that need the file system (URLs, password file, audit log).
"""

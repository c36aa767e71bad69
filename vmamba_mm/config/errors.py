"""The error every config check raises: one line that names the key or file and says the fix."""


class ConfigError(ValueError):
    """A config or flag problem, said in words a user can act on."""

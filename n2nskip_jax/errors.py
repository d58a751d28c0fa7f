"""Errors that reach the user as one line and an exit code, never as a traceback."""
from typing import Any


class UserError(Exception):
  """A problem with the user's input: reported in one line, no traceback (exit 2)."""


class ConfigError(UserError):
  """An invalid config value: names the key, the value and what is allowed."""

  def __init__(self, key: str, value: Any, allowed: str):
    super().__init__(f'config.{key}={value!r}: expected {allowed}')
    self.key, self.value = key, value

"""Stack configuration: schema (pydantic, strict), loading from a stack file or the Pulumi
runtime, and errors that name the key path. Pure: no Pulumi import."""
from .errors import ConfigError, ConfigErrors, key_path
from .load import load_stack, parse, read_and_parse, read_stack_file
from .schema import ModelSpec, StackConfig

__all__ = ["ConfigError", "ConfigErrors", "key_path", "load_stack", "parse", "read_and_parse", "read_stack_file",
           "ModelSpec", "StackConfig"]

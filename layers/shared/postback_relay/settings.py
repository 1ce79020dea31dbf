"""Reading a function's settings from its environment, once, at cold start.

Each function declares its own settings model (a pydantic model in its handler module); this
module only reads the environment variables named after the model's fields and turns a
validation failure into one clear sentence naming every variable at fault.
"""

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError


class SettingsError(RuntimeError):
    """The function's environment is incomplete or wrong: a deployment fault."""


def settings_from_environ[M: BaseModel](model: type[M], environ: Mapping[str, str], *, function: str) -> M:
    """`model` filled from the upper-cased names of its fields; SettingsError when invalid."""
    values = {name: environ[name.upper()] for name in model.model_fields if name.upper() in environ}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"The {function} function's environment is invalid: {problems}") from exc

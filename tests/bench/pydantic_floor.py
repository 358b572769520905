"""P2's floor: functions-framework plus pydantic with one small model built.

``import pydantic`` alone loads little (pydantic imports its parts on first use); defining a model with a
constrained field and a validator loads what any pydantic-based function loads before its own code runs.
"""

import functions_framework  # noqa: F401
from pydantic import BaseModel, Field, field_validator


class Floor(BaseModel):
    name: str = Field("x", min_length=1)

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

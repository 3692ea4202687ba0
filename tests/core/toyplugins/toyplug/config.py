from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = 2.0


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(3, ge=0)
    label: str = "default"
    mode: Literal["fast", "slow"] = "fast"
    inner: Inner = Inner()

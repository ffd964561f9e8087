"""Strict booleans: only `true` and `false` are read as a boolean."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from skylift.kit.strict import TextBool


class Form(BaseModel):
    flag: TextBool | None = None


@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False), (True, True), (None, None)])
def test_true_and_false(text: object, value: bool | None) -> None:
    assert Form.model_validate({"flag": text}).flag is value


@pytest.mark.parametrize("text", ["yes", "no", "1", "0", "on", "True", "FALSE", " true", 1, 0, ""])
def test_anything_else_is_refused(text: object) -> None:
    with pytest.raises(ValidationError):
        Form.model_validate({"flag": text})

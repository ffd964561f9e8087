"""Row ids as the API accepts them: positive and inside a signed 64-bit integer.

SQLite and PostgreSQL keep ids in 64 bits; a larger number would fail in the database driver, so
it is refused where it enters (path, query or body) with a 422 that names the field.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Lt

ID_LIMIT = 2**63

Id = Annotated[int, Ge(1), Lt(ID_LIMIT)]

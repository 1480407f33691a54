"""The chaos night's canary: a synthetic identity number planted in one real row of every feed."""

from __future__ import annotations

from fundx.core.identity import is_valid_id
from sandbox.city.build import City
from sandbox.schema import feed_schema

#: The canary: a synthetic, checksum-valid identity number (西湖区, born 1950-01-01) that no generated
#: person has. The chaos night (``python -m chaos``) plants it in one row of every feed and then searches
#: every file the exchange wrote for it: a hit is personal data at rest in plain text.
CANARY_ID = "330106195001019997"


def plant_canary(city: City, id_number: str = CANARY_ID) -> dict[str, str]:
    """Give one row of every feed the identity number ``id_number``; returns {feed: the row's key}.

    The row is a real one (so the canary travels as any row does: pulled, checked, sealed, handed to
    the stage or quarantined): the first whose key is neither planted invalid nor messy and whose
    own identity number is valid; a birth-date column is set to the canary's, so that the row stays
    consistent. The truths are not updated: a city with a canary is for the chaos night, not for the
    matching stage's truths. A ValueError names a feed with no such row (generate more people).
    """
    if not is_valid_id(id_number):
        raise ValueError("the canary must be a valid 18-character identity number")
    born = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
    touched = {(m["feed"], str(m["key"])) for m in [*city.truths.get("invalid", []), *city.truths.get("messy", [])]}
    planted: dict[str, str] = {}
    for feed, frame in city.feeds.items():
        schema = feed_schema(feed)
        key, column = schema.key, schema.identity
        if column is None:
            continue  # a feed without identity numbers holds no canary
        for position in range(len(frame)):
            row = frame.iloc[position]
            if (feed, str(row[key])) in touched or not is_valid_id(row[column]):
                continue
            frame.iloc[position, frame.columns.get_loc(column)] = id_number
            if "birth_date" in frame.columns:
                frame.iloc[position, frame.columns.get_loc("birth_date")] = born
            planted[feed] = str(row[key])
            break
        else:
            raise ValueError(f"{feed}: no clean row to plant the canary in ({len(frame)} rows); generate more people")
    return planted

"""The bookkeeping columns a transport may add to a pulled frame beside the contract's (no imports: a command that
only lists quarantines need not load pandas for their names)."""

#: a pulled frame's column that marks a row's structural defect, ``"<rule id>: <where and why>"`` (no record
#: content; contracts.rules: row_shape, key_conflict), missing on sound rows; present only in a pull with a defect
DEFECT = "_defect"
#: a malformed row's text as the agency sent it (sealed in the stewards' quarantine, never shown)
RAW = "_raw"
#: the ordinal of the file a row came in, within one pull (file drops): a later file is the agency's later word
#: on a record (connectors.base.deduplicate); bookkeeping, never part of a row's content or hash
ARRIVAL = "_arrival"
#: the columns a transport may add to a pulled frame beside the contract's: DEFECT and RAW count in a row's
#: hash only where they hold a value, so a pull without defects has the digest it always had, chunked or
#: whole; ARRIVAL never counts
RESERVED_COLUMNS = (DEFECT, RAW, ARRIVAL)
#: a quarantined row's column naming every rule it broke (contracts.validate), joined by RULE_SEPARATOR
RULES_COLUMN = "_rules"
RULE_SEPARATOR = ";"

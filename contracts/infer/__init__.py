"""Draft an ODCS v3 contract from an agency's sample (``fundx contract infer``).

Onboarding a new agency starts from a sample of its data: a CSV file (UTF-8, UTF-8 with BOM or
GB18030), an xlsx workbook (its first sheet) or a URL answering JSON (a list of records, or an object
holding one list of records). :func:`contracts.infer.document.infer_contract` reads it and guesses,
column by column:

- the logical name: ASCII headers in snake_case; Chinese headers through
  :data:`contracts.infer.columns.HEADER_NAMES`
  (身份证号 -> id_number, 姓名 -> name, 死亡日期 -> death_date, ...), else ``col_<position>``; the
  agency's own header stays as ``physicalName``;
- the logicalType (string, integer, number, date, timestamp, boolean) and ``required`` (no empty
  value in the sample);
- formats it recognises: resident identity numbers (GB 11643, valid check character), unified
  social credit codes (GB 32100), mobile and landline phone numbers, dates (ISO, 2021/4/12,
  2021年4月12日), timestamps, and the character-class shape of codes (``^[A-Z]{4}[0-9]{12}$``);
- the primary key: a column unique and non-empty in every row, preferring names such as ``*_id``,
  ``id``, ``uscc``, ``*编号``;
- personal data: identity numbers, personal names, phone numbers, addresses, gender, birth and
  event dates and the sensitive categories of the existing contracts (criminal_record, health,
  religion), classified ``restricted`` with ``pii: <kind>`` exactly as the live contracts do, other
  columns ``internal`` with ``pii: none``.

Every guess a person must confirm carries ``customProperties: reviewNeeded: true`` with a note in its
``description``, and the YAML comment at the top lists them; ``fundx contract release`` refuses a
contract that still holds one. The draft loads with :func:`contracts.load_contract`, compiles to its
rules and SLAs, and is valid under the ODCS JSON schema.

Personal data never leaves this package: notes, comments, summaries and patterns hold column names,
types, format names and counts, never a sample value (a pattern is a shape of character classes,
never a value's characters).

The modules, in the order a draft is made: :mod:`contracts.infer.samples` reads the sample,
:mod:`contracts.infer.values` says what one value is, :mod:`contracts.infer.columns` guesses each
column, :mod:`contracts.infer.document` builds the contract and writes its YAML.
"""

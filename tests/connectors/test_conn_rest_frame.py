"""Records of a REST page become the contract's columns, whatever types the agency used."""

from __future__ import annotations

from connectors import connector_for


def test_text_records_take_the_fast_path_and_missing_fields_are_null():
    connector = connector_for("civil_affairs.deaths")
    frame = connector._frame([{"record_id": "R1", "id_number": "x", "extra": "dropped"}, {"record_id": "R2"}])
    assert list(frame.columns) == list(connector.contract.names)
    assert frame["record_id"].tolist() == ["R1", "R2"]
    assert frame["name"].isna().all()


def test_a_number_in_a_text_field_is_kept_as_sent():
    connector = connector_for("civil_affairs.deaths")
    frame = connector._frame([{"record_id": "R1", "id_number": 1.10105e17}, {"record_id": "R2", "id_number": "x"}])
    assert frame["id_number"].tolist() == [1.10105e17, "x"]

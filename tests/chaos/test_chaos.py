"""The chaos night at CI size: every fault profile, at least 50 faults and 20 SIGKILLs of the exchange, one
whole Prefect night, then nothing lost, nothing duplicated, the books balanced, and neither the canary
identity number nor a secret anywhere in plain text (chaos/, `make chaos`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from chaos.night import Chaos, Options


def test_the_search_finds_the_canary_and_secrets_in_every_form_but_not_masked_or_outside(tmp_path):
    """The search itself: a hit in UTF-8, UTF-16 and base64 at any alignment; none for a masked number,
    none for key material inside the key folder."""
    import base64

    from chaos.search import Needle, search
    from fundx.core.identity import mask_id
    from sandbox.city.canary import CANARY_ID

    secret = "s3cr3t-token-value-0123456789"
    (tmp_path / "a.log").write_text(f"x {CANARY_ID} y", encoding="utf-8")
    (tmp_path / "b.db").write_bytes(b"\0" * 5 + CANARY_ID.encode("utf-16-le"))
    for shift in range(3):
        (tmp_path / f"c{shift}.bin").write_bytes(base64.b64encode(b"p" * shift + secret.encode() + b"q"))
    (tmp_path / "masked.log").write_text(mask_id(CANARY_ID), encoding="utf-8")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "k.key").write_bytes(b"KEYMATERIAL-0123456789abcdef")
    (tmp_path / "d.txt").write_bytes(b"..KEYMATERIAL-0123456789abcdef..")
    found = search([tmp_path], [Needle("canary", CANARY_ID), Needle("token", secret),
                                Needle("key", b"KEYMATERIAL-0123456789abcdef", outside=(keys,))])
    hits = {(name, Path(path).name) for path, name in found.hits}
    assert hits == {("canary", "a.log"), ("canary", "b.db"), ("token", "c0.bin"), ("token", "c1.bin"),
                    ("token", "c2.bin"), ("key", "d.txt")}
    assert found.files == 8


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_a_chaos_night_loses_nothing_duplicates_nothing_and_leaks_nothing(run_dir, monkeypatch):
    monkeypatch.setenv("FUNDX_HOME", str(run_dir / "chaos-var"))
    out = io.StringIO()
    chaos = Chaos(Options(seed=20261124, people=3000, rows=250, nights=2, min_faults=50, min_kills=20,
                          prefect_nights=1, workdir=run_dir / "chaos"), out=out)
    result = chaos.run()
    printed = out.getvalue()
    totals = result["totals"]
    assert chaos.ok, printed
    assert totals["faults_injected"] >= 50 and totals["kills"] >= 20, printed
    assert totals["duplicated"] == 0 and totals["lost"] == 0 and totals["unexpected"] == 0, printed
    assert totals["expected"] == totals["delivered"] + totals["quarantined"] > 0
    assert totals["prefect_nights"] == 1 and result["uncovered_profiles"] == []
    assert result["search"]["hits"] == [] and result["search"]["files"] > 0 and result["problems"] == []
    assert len(result["search"]["needles"]) >= 5  # the canary, four credentials, private keys
    # the canary rides in every feed of the generated city (the office's five database feeds are made apart
    # from it and carry none yet): each planted one ended delivered or quarantined, never lost
    assert len(chaos.canary_keys) >= 8, printed
    assert all(f["canary"] in ("delivered", "quarantined") for f in result["feeds"] if f["feed"] in chaos.canary_keys), printed
    # the record and the printout carry counts and names, never the canary or a secret
    record = (run_dir / "chaos" / "chaos.json").read_text(encoding="utf-8")
    from sandbox.city.canary import CANARY_ID

    assert CANARY_ID not in record and CANARY_ID not in printed
    assert json.loads(record)["verdict"] == "PASS"
    assert "TOTAL faults injected" in printed and "duplicated 0, lost 0" in printed

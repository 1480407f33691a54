"""The code values the agencies' contracts define and the matching rules compare with: one place.

Each tuple is the ``enum`` of a contract column (tests/contracts/test_contract_codes.py holds every
contract to it), and the rules' parameters (matching.rules) and the sandbox's generator
(sandbox/city/) take their codes from here, so that no rule compares with a literal of its own.
"""

from __future__ import annotations

#: the social-insurance office's benefit schemes (social_insurance.benefit_roll and .payments: ``scheme``),
#: in the order the sandbox's generator draws them
SCHEMES: tuple[str, ...] = ("basic_pension", "resident_pension", "unemployment", "survivor", "disability")
BASIC_PENSION, RESIDENT_PENSION, UNEMPLOYMENT, SURVIVOR, DISABILITY = SCHEMES
#: schemes one person may not draw at once (duplicate_receipt): each pair sorted
EXCLUSIVE_SCHEMES: tuple[tuple[str, str], ...] = (
    (BASIC_PENSION, RESIDENT_PENSION), (BASIC_PENSION, UNEMPLOYMENT), (RESIDENT_PENSION, UNEMPLOYMENT))

#: a roll entry's status (social_insurance.benefit_roll: ``status``): paid, suspended (in custody, say), stopped
ROLL_STATUSES: tuple[str, ...] = ("active", "suspended", "stopped")
ACTIVE, SUSPENDED, STOPPED = ROLL_STATUSES

#: employer subsidies (social_insurance.employer_subsidies: ``subsidy_type``)
SUBSIDY_TYPES: tuple[str, ...] = ("稳岗返还", "社保补贴", "一次性扩岗补助")

#: a prisoner's custody status (justice.prisoners: ``custody_status``)
CUSTODY_STATUSES: tuple[str, ...] = ("在押", "假释", "暂予监外执行", "刑满释放")
IN_CUSTODY = CUSTODY_STATUSES[0]
#: released at the end of the sentence (刑满释放): the custody period ended on ``sentence_end``
RELEASED = CUSTODY_STATUSES[3]

#: a business's registration status (market_regulation.businesses: ``status``); the last two have ended it
BUSINESS_STATUSES: tuple[str, ...] = ("存续", "在业", "注销", "吊销")
BUSINESS_ENDED: tuple[str, ...] = BUSINESS_STATUSES[2:]

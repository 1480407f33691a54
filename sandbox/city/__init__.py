"""The sandbox's synthetic city: seeded people, their benefit roll and the eight agency feeds about them.

One call, ``generate_city(people, seed, as_of)``, builds a city from its file (fundx/core/cities/:
Hangzhou by default) whose residents have valid GB 11643 identity numbers, many first issued in
other provinces or under codes since retired, some still in 15-digit form in paper registers, names
with a minority name's middle dot or rare characters (docs/agencies.md: The population), the
social-insurance office's own data (benefit roll, contributions, employer subsidies), and the rows
each agency holds about them (deaths, prisoners, bills, businesses, hospital death notifications,
wage income), with a little of real agencies' messiness, about 1 % of rows with mistakes no repair
can fix (which the data contracts quarantine), and a set of planted, known truths (pensions paid
after death, benefits paid in custody, shared bank accounts, ...): exactly the cases the matching
stage's rules must find. ``generate_feed`` streams one feed's rows without a city, in chunks, for
benchmarks.

Everything is vectorised numpy and deterministic: the same (people, seed, as_of) gives identical
frames, drawn from several streams so that what each addition to the generator drew left the frames
before it as they were (build.py). No real personal data: names, numbers and events are drawn at
random.

The package, in the order a city is made:

- ``place``, ``population``: the city's districts and its residents (People);
- ``feeds`` and the builders of each family of feeds: ``deaths`` (four death sources), ``registers``
  (prisoners, businesses), ``payments`` (bills, wage income); ``office``: the office's own data;
  ``office_feeds``: the office's system as an agency (its five feeds, with history: OFFICE_FEEDS);
- ``messiness`` (repairable quirks), ``specs`` and ``invalid`` (the planted invalid rows and the
  contract rules they break), ``truths`` (the planted cases, read back from the frames);
- ``build`` (generate_city), ``stream`` (generate_feed), ``canary`` (the chaos night's canary);
  ``text`` and ``draws``: the helpers they share.

This module exposes the package's main API: the city, the streamed feed and their defaults.
"""

from __future__ import annotations

from sandbox.city.build import City, generate_city
from sandbox.city.feeds import DEFAULT_AS_OF, DEFAULT_SEED, FEEDS
from sandbox.city.office_feeds import OFFICE_FEEDS
from sandbox.city.stream import generate_feed

__all__ = ["DEFAULT_AS_OF", "DEFAULT_SEED", "FEEDS", "OFFICE_FEEDS", "City", "generate_city", "generate_feed"]

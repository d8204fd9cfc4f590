"""Kinds of shop the generator makes (simulation/generator.py), by name: the settings each changes.

Kept apart from the generator so that the command line can list them without numpy.
"""
# Shops unlike the default, each a few settings away from it (the default stays the demo's).
PROFILES: dict[str, dict] = {
    "default": {},
    # A few hundred shoppers and a few thousand orders: every block of the evaluation is
    # thin, some are empty.
    "tiny": dict(days=60, orders=2_000, shoppers=300, goods=300, clusters=4,
                 items_per_cluster=40, bundles=10),
    # Books or media: ten months, some 800 shoppers who order, 1,800 orders, 1,400 goods,
    # no re-buys.
    "no_repeat": dict(days=300, orders=1_800, shoppers=1_300, goods=1_400, clusters=10,
                      items_per_cluster=120, bundles=15, repeat_purchases=False),
    # Tens of thousands of goods, most bought a handful of times.
    "long_tail": dict(days=60, orders=20_000, shoppers=4_000, goods=30_000, clusters=40,
                      items_per_cluster=600, bundles=60, popularity_exponent=0.6),
    # Half a year in which each goods sells for a few weeks around its peak.
    "seasonal": dict(days=180, orders=20_000, season_weeks=2.0),
    # Catalog churn without repeats: a year in which each goods sells for a few weeks
    # around its launch and then hardly at all, some 1,000 shoppers, nobody buys a goods
    # twice: last month's bestsellers are gone by now.
    "churn": dict(days=365, orders=5_000, shoppers=1_000, goods=3_000, clusters=10,
                  items_per_cluster=300, bundles=20, repeat_purchases=False,
                  season_weeks=1.0, season_floor=0.001),
    # Three orders in four without a phone.
    "guests": dict(guest_rate=0.75),
}

"""The demo's bookkeeping: per-window shares, and the propagation time of an edit."""

from __future__ import annotations

import yaml

from pilot.demo.scenario import PHASES, render
from pilot.demo.traffic import EditWatch, Tally

ALL_V2, JASON_V3 = PHASES[1], PHASES[2]


def test_tally_shares_and_bar() -> None:
    tally = Tally()
    for version in ["v1"] * 3 + ["v2"] + [None]:
        tally.add(version)
    assert (tally.total, tally.errors) == (5, 1)
    assert tally.share("v1") == 0.75
    assert tally.bar(["v1", "v2", "v3"], width=8) == "11111122"
    assert Tally().bar(["v1"], width=4) == "...."


def test_edit_to_all_v2_converges_after_the_last_v1() -> None:
    watch = EditWatch(ALL_V2, written_at=10.0)
    watch.observe(9.9, 10.01, "v1", jason=False)  # sent before the write: either route is fine
    assert watch.converged is None
    watch.observe(10.02, 10.05, "v1", jason=False)
    watch.observe(10.06, 10.10, "v2", jason=False)
    watch.observe(10.11, 10.15, "v1", jason=False)  # the old route, once more
    watch.observe(10.16, 10.20, "v2", jason=False)
    watch.observe(10.21, 10.25, "v2", jason=True)
    assert round(watch.last_old or 0, 2) == 0.15
    assert round(watch.converged or 0, 2) == 0.20
    assert not watch.settled(now=11.0)
    assert watch.settled(now=12.3)
    assert "100% on the new route 0.20s after the write" in watch.describe()


def test_edit_to_jason_v3_needs_a_v3_reply() -> None:
    watch = EditWatch(JASON_V3, written_at=0.0)
    watch.observe(0.01, 0.02, "v2", jason=False)  # fits both routes: proves nothing
    assert watch.converged is None
    watch.observe(0.03, 0.04, "v2", jason=True)  # jason on v2: still the old route
    watch.observe(0.05, 0.06, "v2", jason=False)
    watch.observe(0.07, 0.08, "v3", jason=True)
    assert round(watch.first_new or 0, 2) == 0.08
    assert round(watch.converged or 0, 2) == 0.08
    assert watch.describe().startswith("first v3 reply 0.08s after the write, 100% after 0.08s")


def test_bundled_config_renders_with_the_ports() -> None:
    ports = {"SERVICE_PORT": 9080, "V1_PORT": 1, "V2_PORT": 2, "V3_PORT": 3}
    entry, rule = yaml.safe_load_all(render("reviews.yaml", ports))
    assert entry["spec"]["ports"][0]["number"] == 9080
    assert [e["ports"]["http"] for e in entry["spec"]["endpoints"]] == [1, 2, 3]
    assert [s["name"] for s in rule["spec"]["subsets"]] == ["v1", "v2", "v3"]
    for phase in PHASES:
        assert yaml.safe_load(render(phase.template, ports))["kind"] == "VirtualService"

"""The system reports on the demo lab's bench history (flasktrack/demo_lab.py `seed_demo_history`), with figures
worked by hand from those rows; every shipped lake report executes."""

from __future__ import annotations

from domain.roles import Role
from flasktrack.demo_lab import seed_demo_history
from tests.reports.support import drain, new_report
from tests.runs.support import caller
from tests.support import make_org


def _rows(result: dict) -> list[dict]:
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def test_the_science_reports_on_the_demo_history(client, owner, platform) -> None:
    org = make_org(owner, client)
    with owner.begin(org.id) as s:
        seed_demo_history(s, caller(org, Role.technician))
    drain(owner, platform.settings.resolved_lake_uri)
    h = org.headers(Role.auditor)

    def execute(key: str, parameters: dict | None = None) -> list[dict]:
        report = new_report(client, org, Role.auditor, key, parameters)
        r = client.post(f"/api/v1/reports/{report['id']}/execute", headers=h)
        assert r.status_code == 200, (key, r.text)
        return _rows(r.json())

    # By hand from DEMO_SUBCULTURES: SR1 on MS-BAP-0901 in September, 2 + 6 of 40 + 40 vessels = 8/80 = 10 %;
    # October: SR1 3/48 = 6.25 %, Desiree 3/(30 + 30) = 5 %; November: Desiree 9/36 = 25 %.
    tc = execute("science-tc-contamination")
    assert [(r["month"], r["line"], r["medium"], r["operator"], r["vessels"], r["contaminated_vessels"],
             r["contamination_rate"]) for r in tc] == [
        ("2026-09", "SR1", "MS-BAP-0901", "Tariq Technician", 80, 8, 0.1),
        ("2026-10", "Desiree", "MS-BAP-1002", "Sam Scientist", 60, 3, 0.05),
        ("2026-10", "SR1", "MS-BAP-1002", "Tariq Technician", 48, 3, 0.0625),
        ("2026-11", "Desiree", "MS-BAP-1101", "Tariq Technician", 36, 9, 0.25)]
    assert [r["month"] for r in execute("science-tc-contamination", {"since": "2026-10-01", "until": "2026-11-01"})] \
        == ["2026-10", "2026-10"]

    # pBIN19-GFP: (64 + 41) / (118 + 96) = 105/214 = 0.4907; pCAMBIA1301: 27/110 = 0.2455.
    agro = execute("science-agro-efficiency")
    assert [(r["strain"], r["construct"], r["runs"], r["discs_plated"], r["discs_with_shoots"], r["efficiency"])
            for r in agro] == [("GV3101", "pBIN19-GFP", 2, 214, 105, 0.4907),
                               ("GV3101", "pCAMBIA1301", 1, 110, 27, 0.2455)]

    fungal = execute("science-fungal-passages")
    assert [(r["passage"], r["colony_diameter_mm"], r["contaminated"]) for r in fungal] == [
        (1, 62.0, False), (2, 58.5, False), (3, 55.0, False), (4, 41.5, True)]
    assert fungal[1]["parent_culture"] == fungal[0]["new_culture"]

    runs = execute("operations-runs")
    assert {(r["protocol_key"], r["status"]): r["runs"] for r in runs} == {
        ("agrobacterium-transformation", "completed"): 3, ("fungal-culture-passage", "completed"): 1,
        ("plant-tissue-subculture", "completed"): 4}
    for key in ("operations-escalations", "operations-cycle-times", "operations-workload", "audit-activity",
                "audit-denials"):
        execute(key)  # each runs on a lake with the shared tables, whatever rows it has

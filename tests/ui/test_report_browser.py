"""In real headless Chromium: an analyst builds a contamination-rate report with a chart, starts a report of it,
executes it and sees the chart drawn by the server; a lab manager opens it in review. axe-core over the reports
pages, with no serious or critical violation. Screenshots into docs/ui/."""

from __future__ import annotations

import json
import re

import pytest

from domain.roles import Role
from tests.reports.support import drain, subculture
from tests.support import make_org
from tests.ui.conftest import screenshot
from tests.ui.test_browser_roles import log_in, serious_violations
from tests.ui.test_report_pages import CHART, SQL

pytestmark = pytest.mark.usefixtures("chromium")


def test_an_analyst_saves_a_contamination_report_with_a_chart_and_sees_it(page, web_url, client, owner, settings):
    org = make_org(owner, client)
    run = subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=40, contaminated=4)
    subculture(owner, org, line="SR1", medium="MS-SEL-7", operator="Ana", vessels=20, contaminated=1, iteration=1,
               run_id=run)
    subculture(owner, org, line="SR1", medium="MS-SEL-8", operator="Ben", vessels=50, contaminated=10)
    drain(owner, settings.resolved_lake_uri)
    found: dict[str, list[str]] = {}

    log_in(page, web_url, org.users[Role.analyst][1], r"/ui/lake")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.wait_for_url(f"{web_url}/ui/reports")
    found["list"] = serious_violations(page)
    page.get_by_role("link", name="Build a report").click()
    page.wait_for_url(f"{web_url}/ui/reports/builder")
    page.locator("#table-form_shoot_count summary").click()
    assert "Contaminated vessels discarded" in page.locator("#table-form_shoot_count").inner_text()
    page.get_by_label(re.compile("^SQL")).fill(SQL)
    page.get_by_label("Parameters", exact=True).fill("min_vessels integer 0")
    page.get_by_role("button", name="Validate").click()
    page.locator("#check-result").wait_for()
    assert page.locator("#check-result").inner_text().startswith("Valid")
    page.get_by_role("button", name="Preview").click()
    page.locator("#preview").wait_for()
    assert "0.0833" in page.locator("#preview").inner_text()
    page.get_by_label("Key", exact=True).fill("tc-rate-by-operator")
    page.get_by_label("Title", exact=True).fill("Contamination rate by operator")
    page.get_by_label(re.compile("^Chart")).fill(json.dumps(CHART, indent=1))
    page.get_by_label("lab manager", exact=True).check()  # the reviewers see it
    found["builder"] = serious_violations(page)
    screenshot(page, "report-builder")
    page.get_by_role("button", name="Save definition").click()
    page.wait_for_url(re.compile(r"/ui/reports\?saved=tc-rate-by-operator"))
    page.locator("#def-tc-rate-by-operator").get_by_label(re.compile("Title of the new")).fill("October, by operator")
    page.locator("#def-tc-rate-by-operator").get_by_role("button", name=re.compile("^New report")).click()
    page.wait_for_url(re.compile(r"/ui/reports/[0-9a-f-]{36}$"))
    page.get_by_label(re.compile("^min_vessels")).fill("0")
    page.get_by_role("button", name="Execute").click()
    page.wait_for_url(re.compile(r"done=executed"))
    chart = page.get_by_role("img", name=re.compile("Chart of October, by operator"))
    assert chart.is_visible()
    assert chart.evaluate("img => img.complete && img.naturalWidth > 100")  # the server's SVG, drawn
    assert "Ana" in page.locator("#result").inner_text() and "Ben" in page.locator("#result").inner_text()
    found["report"] = serious_violations(page)
    screenshot(page, "report")
    page.get_by_role("button", name="Submit for review").click()
    page.wait_for_url(re.compile(r"done=review"))
    report_url = page.url.split("?")[0]

    page.context.clear_cookies()
    log_in(page, web_url, org.users[Role.lab_manager][1], r"/ui/")
    page.goto(report_url)
    assert page.get_by_role("button", name="Sign and finalize").is_visible()
    found["in review"] = serious_violations(page)
    screenshot(page, "report-review")
    assert {p: v for p, v in found.items() if v} == {}

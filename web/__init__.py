"""The web pages: server-rendered screens (Jinja2 + htmx) for the people in the lab, mounted by the API app.

The pages call the domain services, as the HTTP API does: one set of rules, one permission matrix
(domain/roles.py), one audit trail. A step action (a completion) and every call on a run's workflow (launch,
hold/resume/cancel, an approval's signature, the run's history) go through the same functions as the API's,
handed in by the API app (`Services.complete_task`, `Services.runs`: web/actions.py), so this package imports
nothing above the domain.
"""

from web.app import PREFIX, Services, create_web_app

__all__ = ["PREFIX", "Services", "create_web_app"]

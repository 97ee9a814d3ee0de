"""Publish the forms of protocol versions approved before forms were published at approval: one
`form_published` outbox row per form, so the sink creates their (empty, typed) lake tables and each
organization sees its own over Flight SQL before the first submission, as for versions approved from now on.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every task node of the stored plan with a form, at any depth (sequences, parallel branches, repeat bodies).
UPGRADE = r"""
INSERT INTO outbox (org_id, topic, payload)
SELECT DISTINCT v.org_id, 'form_published', jsonb_build_object(
         'org_id', v.org_id::text, 'protocol_key', p.key, 'protocol_version', v.version,
         'step_key', t.node->>'key', 'form_key', t.node->'form'->>'key', 'fields', t.node->'form'->'fields')
FROM protocol_versions v
JOIN protocols p ON p.id = v.protocol_id
CROSS JOIN LATERAL jsonb_path_query(v.plan, 'strict $.** ? (@.kind == "task")') AS t(node)
WHERE v.status IN ('approved', 'retired') AND jsonb_typeof(t.node->'form') = 'object';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    pass  # the rows are consumed by the sink; the tables they made stay in the lake

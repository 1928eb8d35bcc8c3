"""The PostgreSQL schema of the service store; every statement is safe to run again."""

from __future__ import annotations

from typing import LiteralString

from service.store import knowledge_search
from service.store.columns import (
    DEVICE_COLUMNS,
    HELD_CONDITION,
    OPEN_CONDITION,
    TICKET_COLUMNS,
)

# Serialises migrations of concurrent processes (API and worker start together).
MIGRATE_LOCK_KEY = 0x76_69_67_73_76_63  # "vigsvc"

SCHEMA: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS service_sites (id text PRIMARY KEY, doc jsonb NOT NULL)",
    """CREATE TABLE IF NOT EXISTS service_devices (
        id text PRIMARY KEY, site_id text NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_devices_site ON service_devices (site_id)",
    "CREATE TABLE IF NOT EXISTS service_patients (id text PRIMARY KEY, doc jsonb NOT NULL)",
    """CREATE TABLE IF NOT EXISTS service_engineers (
        id text PRIMARY KEY, region text NOT NULL, doc jsonb NOT NULL)""",
    # Auto-dispatch's candidates: the engineers of one region, not a scan of the whole network's.
    "CREATE INDEX IF NOT EXISTS service_engineers_region ON service_engineers (region, id)",
    """CREATE TABLE IF NOT EXISTS service_tickets (
        id text PRIMARY KEY, device_id text NOT NULL, state text NOT NULL, doc jsonb NOT NULL,
        version integer NOT NULL DEFAULT 1)""",
    "CREATE INDEX IF NOT EXISTS service_tickets_device ON service_tickets (device_id)",
    "CREATE INDEX IF NOT EXISTS service_tickets_state ON service_tickets (state)",
    # ``at`` and ``data`` are kept as the exact text that was hashed: a timestamptz would come
    # back in the session's time zone and jsonb would reorder keys, and either breaks the hash.
    """CREATE TABLE IF NOT EXISTS service_audit_log (
        seq bigint PRIMARY KEY, at text NOT NULL, actor text NOT NULL, action text NOT NULL,
        subject text NOT NULL, data text NOT NULL, prev_hash text NOT NULL,
        hash text NOT NULL)""",
    # The audit log is append-only in the database too, not just by convention.
    """CREATE OR REPLACE FUNCTION service_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER service_audit_no_change
        BEFORE UPDATE OR DELETE ON service_audit_log
        FOR EACH ROW EXECUTE FUNCTION service_audit_append_only()""",
    """CREATE OR REPLACE TRIGGER service_audit_no_truncate
        BEFORE TRUNCATE ON service_audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION service_audit_append_only()""",
    """CREATE TABLE IF NOT EXISTS service_audit_signatures (
        seq bigint PRIMARY KEY, signature text NOT NULL)""",
    """CREATE OR REPLACE TRIGGER service_audit_signatures_no_change
        BEFORE UPDATE OR DELETE ON service_audit_signatures
        FOR EACH ROW EXECUTE FUNCTION service_audit_append_only()""",
    # at_s: the attempt's time (epoch s), which retention prunes by (indexed in AFTER_UPGRADES).
    """CREATE TABLE IF NOT EXISTS service_deliveries (
        n bigserial PRIMARY KEY, event_id text NOT NULL, doc jsonb NOT NULL,
        at_s double precision)""",
    "CREATE INDEX IF NOT EXISTS service_deliveries_event ON service_deliveries (event_id)",
    # The transactional outbox: written with the ticket change, emptied by the worker's sender.
    """CREATE TABLE IF NOT EXISTS service_outbox (
        key text PRIMARY KEY, event_id text NOT NULL, status text NOT NULL,
        next_at double precision NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_outbox_pending ON service_outbox (status, next_at)",
    "CREATE INDEX IF NOT EXISTS service_outbox_event ON service_outbox (event_id)",
    """CREATE TABLE IF NOT EXISTS service_cursors (
        name text PRIMARY KEY, at text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS service_dead_letters (
        n bigserial PRIMARY KEY, received_at timestamptz NOT NULL, topic text NOT NULL,
        reason text NOT NULL, payload bytea NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_dead_letters_received"
    " ON service_dead_letters (received_at)",
    # Traceability: the UDI each device was registered with, and the recalled lots.
    """CREATE TABLE IF NOT EXISTS service_device_udi (
        device_id text PRIMARY KEY, lot text NOT NULL, doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_device_udi_lot ON service_device_udi (lot)",
    """CREATE TABLE IF NOT EXISTS service_recalls (
        key text PRIMARY KEY, lot text NOT NULL, doc jsonb NOT NULL)""",
    # Service credits: what SLA breaches owe customers, one per (ticket, clock, breach instant).
    """CREATE TABLE IF NOT EXISTS service_credits (
        key text PRIMARY KEY, ticket_id text NOT NULL, site_id text NOT NULL, patient text,
        at_us bigint NOT NULL, amount_minor bigint NOT NULL, currency text NOT NULL,
        doc jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS service_credits_site ON service_credits (site_id, at_us, key)",
    "CREATE INDEX IF NOT EXISTS service_credits_at ON service_credits (at_us, key)",
    "CREATE INDEX IF NOT EXISTS service_credits_ticket ON service_credits (ticket_id)",
    # The knowledge base: causes and fixes per (device model, fault code); text is lower-cased.
    """CREATE TABLE IF NOT EXISTS service_knowledge (
        model text NOT NULL, code text NOT NULL, text text NOT NULL, doc jsonb NOT NULL,
        PRIMARY KEY (model, code))""",
    "CREATE INDEX IF NOT EXISTS service_knowledge_code ON service_knowledge (code, model)",
    # Spare parts per warehouse; low/alerted drive the worker's once-per-fall low-stock alert.
    """CREATE TABLE IF NOT EXISTS service_stock (
        warehouse text NOT NULL, part text NOT NULL, on_hand integer NOT NULL,
        reserved integer NOT NULL DEFAULT 0, low_at integer NOT NULL DEFAULT 0,
        low integer NOT NULL DEFAULT 0, alerted integer NOT NULL DEFAULT 0,
        PRIMARY KEY (warehouse, part))""",
    "CREATE INDEX IF NOT EXISTS service_stock_low ON service_stock (low, alerted)",
    # Tickets flagged "patient harm suspected": the start of a vigilance (incident) report.
    """CREATE TABLE IF NOT EXISTS service_harm_flags (
        ticket_id text PRIMARY KEY, flagged_us bigint NOT NULL, doc jsonb NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS service_harm_flags_at
        ON service_harm_flags (flagged_us, ticket_id)""",
    """CREATE TABLE IF NOT EXISTS service_reservations (
        ticket_id text NOT NULL, warehouse text NOT NULL, part text NOT NULL,
        quantity integer NOT NULL, PRIMARY KEY (ticket_id, warehouse, part))""",
    # Quiet hours patients chose on their page ("patient/<id>"; doc: {"quiet_hours": … | null}).
    """CREATE TABLE IF NOT EXISTS service_quiet_hours (
        recipient text PRIMARY KEY, updated_us bigint NOT NULL, doc jsonb NOT NULL)""",
)

# Upgrades of tables made by earlier releases: (table, column, ALTER statement). Run only when
# the column is missing, since ALTER TABLE locks the table exclusively even when it does nothing.
UPGRADES: tuple[tuple[str, str, str], ...] = (
    # Before optimistic concurrency: every existing ticket starts at version 1.
    (
        "service_tickets",
        "version",
        "ALTER TABLE service_tickets ADD COLUMN version integer NOT NULL DEFAULT 1",
    ),
    # Before retention: deliveries get their attempt's time from their document.
    (
        "service_deliveries",
        "at_s",
        "ALTER TABLE service_deliveries ADD COLUMN at_s double precision;"
        " UPDATE service_deliveries SET at_s = extract(epoch FROM (doc->>'at')::timestamptz)",
    ),
    # The columns lists, scopes and clocks query (service.store.columns), filled by backfill().
    *(
        ("service_tickets", name, f"ALTER TABLE service_tickets ADD COLUMN {name} {kind}")
        for name, kind in TICKET_COLUMNS
    ),
    *(
        ("service_devices", name, f"ALTER TABLE service_devices ADD COLUMN {name} {kind}")
        for name, kind in DEVICE_COLUMNS
    ),
    # The knowledge base's full-text search (service.store.knowledge_search).
    ("service_knowledge", "search", knowledge_search.POSTGRES_COLUMN),
)

# Statements that need the upgraded columns (indexes on them), run after UPGRADES.
AFTER_UPGRADES: tuple[LiteralString, ...] = (
    knowledge_search.POSTGRES_INDEX,
    "CREATE INDEX IF NOT EXISTS service_deliveries_at ON service_deliveries (at_s)",
    "CREATE INDEX IF NOT EXISTS service_devices_site_id ON service_devices (site_id, id)",
    "CREATE INDEX IF NOT EXISTS service_devices_site_ward ON service_devices (site_id, ward, id)",
    "CREATE INDEX IF NOT EXISTS service_devices_patient ON service_devices (patient, id)",
    "CREATE INDEX IF NOT EXISTS service_devices_pm ON service_devices (kind, last_pm_day)",
    "CREATE INDEX IF NOT EXISTS service_devices_warranty ON service_devices (warranty_day)",
    "CREATE INDEX IF NOT EXISTS service_tickets_site ON service_tickets (site_id, id)",
    "CREATE INDEX IF NOT EXISTS service_tickets_patient ON service_tickets (patient, id)",
    "CREATE INDEX IF NOT EXISTS service_tickets_assignee ON service_tickets (assignee, state)",
    # The tickets engineers hold now, for the load auto-dispatch weighs (a few per engineer).
    "CREATE INDEX IF NOT EXISTS service_tickets_held ON service_tickets (assignee, id)"
    f" WHERE {HELD_CONDITION}",
    "CREATE INDEX IF NOT EXISTS service_tickets_open ON service_tickets (id)"
    f" WHERE {OPEN_CONDITION}",
    "CREATE INDEX IF NOT EXISTS service_tickets_opened ON service_tickets (opened_us, id)",
    # Undispatched tickets, oldest first: the worker retries them every tick.
    """CREATE INDEX IF NOT EXISTS service_tickets_state_opened
        ON service_tickets (state, opened_us, id)""",
    "CREATE INDEX IF NOT EXISTS service_tickets_updated ON service_tickets (updated_us, id)",
    "CREATE INDEX IF NOT EXISTS service_tickets_due ON service_tickets (due_us, id)",
    """CREATE INDEX IF NOT EXISTS service_tickets_respond_breach
        ON service_tickets (respond_breach_us)""",
    """CREATE INDEX IF NOT EXISTS service_tickets_resolve_breach
        ON service_tickets (resolve_breach_us)""",
    "CREATE INDEX IF NOT EXISTS service_tickets_escalate ON service_tickets (escalate_us)",
    "CREATE INDEX IF NOT EXISTS service_tickets_clocks ON service_tickets (clocks)",
)

# --- remote diagnosis and presence (issue 16; service/store/sql_store.py RemoteQueries) -----
REMOTE_SCHEMA: tuple[LiteralString, ...] = (
    """CREATE TABLE IF NOT EXISTS remote_commands (
        command_id text PRIMARY KEY, ticket_id text NOT NULL, state text NOT NULL,
        due_us bigint NOT NULL, requested_us bigint NOT NULL, doc text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS remote_commands_ticket"
    " ON remote_commands (ticket_id, requested_us)",
    "CREATE INDEX IF NOT EXISTS remote_commands_state ON remote_commands (state, due_us)",
    """CREATE TABLE IF NOT EXISTS remote_presence (
        subject_id text PRIMARY KEY, kind text NOT NULL, gateway_id text NOT NULL,
        state text NOT NULL, doc text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS remote_presence_gateway ON remote_presence (gateway_id)",
    """CREATE TABLE IF NOT EXISTS remote_gateway_health (
        gateway_id text PRIMARY KEY, at_us bigint NOT NULL, doc text NOT NULL)""",
)
